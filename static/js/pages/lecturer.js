import { params, api, publish, watch, fmtError } from "/static/js/relay.js";
import { mountModeration } from "/static/js/qa.js";
import { mountFloor } from "/static/js/floor.js";

const { session, token } = params();
const $ = (id) => document.getElementById(id);
const state = { stream: null, pub: null, info: null, wantLive: false, retrying: false };
window.relayState = state;

function status(text, cls = "") { $("status").textContent = text; $("status").className = `status ${cls}`; }

async function useStream(stream) {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = stream;
  $("preview").srcObject = stream;
  $("go").disabled = !!state.pub;
  status(state.pub ? "正在直播" : "预览中，点击“开始直播”。", state.pub ? "ok" : "");
  if (state.pub) await goLive(); // switch source while live: publish again, viewers stay
}

$("camera").onclick = async () => {
  try {
    await useStream(await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25 } },
    }));
  } catch (e) { status(`无法开启摄像头：${e.name}`, "error"); }
};

$("screen").onclick = async () => {
  try {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
    const stream = new MediaStream([...screen.getVideoTracks(), ...(mic ? mic.getAudioTracks() : [])]);
    await useStream(stream);
  } catch (e) { status(`无法共享屏幕：${e.name}`, "error"); }
};

async function goLive() {
  state.wantLive = true;
  const old = state.pub;
  try {
    status("正在连接……");
    state.pub = await publish(session, token, state.stream, {
      iceServers: state.info.ice_servers, videoCodec: state.info.video_codec,
    });
    if (old) old.pc.close(); // the new publication has taken over on the relay
    watchConnection(state.pub);
    publishLow();
    status("正在直播", "ok");
    $("go").disabled = true;
    $("stop").disabled = false;
  } catch (e) {
    status(fmtError(e), "error");
  }
}

// The low copy for weak networks: the same camera at a quarter of the pixels and ~250 kbit/s,
// a second publication (aiortc cannot receive simulcast). Viewers whose link loses packets
// are moved to it by the relay, and back. Without it they fall back to sound only.
async function publishLow() {
  const video = state.stream && state.stream.getVideoTracks()[0];
  if (state.low) { state.low.stop().catch(() => {}); state.low = null; }
  if (!video) return;
  try {
    state.low = await publish(session, token, new MediaStream([video.clone()]), {
      iceServers: state.info.ice_servers, videoCodec: state.info.video_codec,
      feed: "low", maxBitrate: 250000, scaleDown: 2,
    });
  } catch (e) { /* optional: viewers fall back to sound only */ }
}

function watchConnection(pub) {
  pub.pc.addEventListener("connectionstatechange", async () => {
    if (pub !== state.pub || !state.wantLive) return;
    if (["failed", "closed"].includes(pub.pc.connectionState) && !state.retrying) {
      state.retrying = true;
      status("网络中断，正在重新连接……", "error");
      while (state.wantLive && pub === state.pub) {
        await new Promise((r) => setTimeout(r, 2000));
        try { await goLive(); break; } catch (e) { /* keep trying */ }
      }
      state.retrying = false;
    }
  });
}

$("go").onclick = goLive;
$("stop").onclick = async () => {
  state.wantLive = false;
  if (state.pub) await state.pub.stop();
  if (state.low) await state.low.stop();
  state.pub = null;
  state.low = null;
  $("go").disabled = !state.stream;
  $("stop").disabled = true;
  status("已暂停推流，观众保持连接；点击“开始直播”继续。", "warn");
};

$("end").onclick = async () => {
  if (!confirm("确定结束本次讲座吗？结束后所有观看将断开，考勤记录将签名封存。")) return;
  state.wantLive = false;
  try {
    const r = await api(`/api/sessions/${session}/end`, { token, method: "POST", body: {} });
    if (state.pub) state.pub.pc.close();
    state.pub = null;
    document.querySelectorAll(".controls button").forEach((b) => (b.disabled = true));
    const rc = r.receipt;
    $("receipttext").textContent = rc
      ? `会话 ${rc.session}\n事件数 ${rc.seq}\n链头 ${rc.head}\n签名 ${rc.signature}\n公钥指纹 ${rc.key_fp}`
      : "本讲座没有考勤事件。";
    $("receipt").hidden = false;
    status("讲座已结束", "ok");
  } catch (e) { status(fmtError(e), "error"); }
};

async function refresh() {
  try {
    const s = await api(`/api/sessions/${session}/stats`, { token });
    $("viewers").textContent = s.viewers;
    $("rooms").textContent = `${s.rooms_connected}/${s.rooms.length}`;
    $("heads").textContent = s.headcount_total;
    $("roomlist").innerHTML = "";
    if ($("walltown").options.length === 1) {
      for (const t of new Set(s.rooms.map((r) => r.township))) $("walltown").append(new Option(t, t));
    }
    if (s.rooms.length > 30) {
      // hundreds of classrooms: one line a township (connected of all, people reported)
      const towns = new Map();
      for (const r of s.rooms) {
        const t = towns.get(r.township) || { n: 0, on: 0, heads: 0 };
        t.n += 1; t.on += r.connected ? 1 : 0; t.heads += r.headcount || 0;
        towns.set(r.township, t);
      }
      for (const [town, t] of towns) {
        const li = document.createElement("li");
        li.className = t.on ? "on" : "off";
        li.textContent = `${town}：${t.on}/${t.n} 个教室在线 · ${t.heads} 人`;
        $("roomlist").appendChild(li);
      }
      $("roomlist").className = "rooms townlist";
    } else {
      for (const r of s.rooms) {
        const li = document.createElement("li");
        li.className = r.connected ? "on" : "off";
        const place = r.kind === "school" ? r.name : `${r.township} ${r.name}`;
        li.textContent = `${place}${r.headcount != null ? `（${r.headcount} 人）` : ""}`;
        $("roomlist").appendChild(li);
      }
    }
  } catch (e) { /* keep the last figures */ }
  try {
    const q = await api(`/api/sessions/${session}/quality`, { token });
    const poor = q.filter((r) => r.poor).length;
    $("poorcount").textContent = q.length ? `${poor} 人网络较差` : "";
    $("quality").replaceChildren(...q.slice(0, 20).map((r) => {
      const li = document.createElement("li");
      li.className = r.poor ? "off" : "on";
      const pct = r.loss == null ? "—" : `${(r.loss * 100).toFixed(1)}%`;
      const rtt = r.rtt_ms == null ? "—" : `${Math.round(r.rtt_ms)} ms`;
      const jit = r.jitter_ms == null ? "—" : `${Math.round(r.jitter_ms)} ms`;
      const layer = r.audio_only ? "仅声音（自选）" : { high: "高清", low: "低清", audio: "仅声音（弱网）" }[r.layer] || "";
      li.textContent = `${r.participant}：丢包 ${pct}，抖动 ${jit}，往返 ${rtt}，${layer}`;
      return li;
    }));
  } catch (e) { /* keep */ }
}

// The wall: one tile per room, its camera (when it sends one), count and network; a page of
// 24 at a time (a lecture may have 300 classrooms), optionally one township's.
const tiles = new Map();
const wallAt = { page: 0, township: "" };
function dropTile(code) {
  const t = tiles.get(code);
  if (t.view && t.view !== "pending") t.view.stop();
  t.fig.remove();
  tiles.delete(code);
}
async function refreshWall() {
  let w;
  const q = `page=${wallAt.page}&township=${encodeURIComponent(wallAt.township)}`;
  try { w = await api(`/api/sessions/${session}/wall?${q}`, { token }); } catch (e) { return; }
  wallAt.page = w.page;
  const shown = new Set(w.rooms.map((r) => r.code));
  for (const code of [...tiles.keys()]) if (!shown.has(code)) dropTile(code);
  $("wallnav").hidden = w.pages <= 1 && !wallAt.township;
  $("wallpage").textContent = `第 ${w.page + 1}/${w.pages} 页`;
  for (const r of w.rooms) {
    let t = tiles.get(r.code);
    if (!t) {
      const video = Object.assign(document.createElement("video"), { autoplay: true, muted: true, playsInline: true });
      const cap = document.createElement("figcaption");
      const fig = document.createElement("figure");
      fig.dataset.code = r.code;
      fig.append(video, cap);
      $("wall").append(fig);
      t = { fig, video, cap, view: null };
      tiles.set(r.code, t);
    }
    const poor = r.loss !== null && (r.loss > 0.05 || r.rtt_ms > 300);
    t.fig.className = poor ? "poor" : "";
    t.cap.textContent = `${r.name} · ${r.connected ? "在线" : "未连接"}`
      + (r.headcount !== null ? ` · ${r.headcount} 人` : "")
      + (r.loss !== null ? ` · 丢包 ${(r.loss * 100).toFixed(1)}%` : "");
    if (r.wall_live && !t.view) {
      t.view = "pending";
      watch(session, token, { iceServers: state.info.ice_servers, feed: `wall:${r.code}` })
        .then((v) => { t.view = v; t.video.srcObject = v.stream; t.video.play().catch(() => {}); })
        .catch(() => { t.view = null; });
    } else if (!r.wall_live && t.view && t.view !== "pending") {
      t.view.stop();
      t.view = null;
      t.video.srcObject = null;
    }
  }
}

// Roll call (点名): start one; the answers' count rises as members tap 到 and rooms answer.
async function refreshRollCall() {
  let r;
  try { r = await api(`/api/sessions/${session}/rollcalls`, { token }); } catch (e) { return; }
  const plan = r.plan && r.plan.planned ? `（随机点名：已安排 ${r.plan.planned} 次，余 ${r.plan.to_come} 次）` : "";
  if (r.open) {
    $("rcstatus").textContent = `点名中：已应答 ${r.open.answers}（党员 ${r.open.members} · 教室 ${r.open.rooms}），剩余 ${r.open.closes_in_s} 秒${plan}`;
    $("rcstart").disabled = true;
  } else {
    const last = r.held && r.held[r.held.length - 1];
    $("rcstatus").textContent = (last ? `上次点名：应答 ${last.answers}（党员 ${last.members} · 教室 ${last.rooms}）` : "") + plan;
    $("rcstart").disabled = false;
  }
}
$("rcstart").onclick = async () => {
  try {
    await api(`/api/sessions/${session}/rollcalls`, { token, method: "POST", body: { window_s: Number($("rcwindow").value) } });
    refreshRollCall();
  } catch (e) { status(fmtError(e), "error"); }
};

try {
  state.info = await api(`/api/sessions/${session}`, { token });
  $("title").textContent = state.info.title;
  document.title = `${state.info.title} · 主讲人`;
  refresh();
  setInterval(refresh, 3000);
  mountModeration($("modbox"), session, token);
  window.floor = mountFloor($("floorbox"), session, token, { chair: true, iceServers: state.info.ice_servers });
  $("walltown").onchange = () => { wallAt.township = $("walltown").value; wallAt.page = 0; refreshWall(); };
  $("wallprev").onclick = () => { wallAt.page = Math.max(0, wallAt.page - 1); refreshWall(); };
  $("wallnext").onclick = () => { wallAt.page += 1; refreshWall(); }; // the relay keeps it in range
  refreshWall();
  setInterval(refreshWall, 3000);
  refreshRollCall();
  setInterval(refreshRollCall, 2000);
} catch (e) {
  status(fmtError(e), "error");
  document.querySelectorAll("button").forEach((b) => (b.disabled = true));
}
