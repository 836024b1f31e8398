import { params, api, publish, fmtError } from "/static/js/relay.js";
import { Player } from "/static/js/player.js";
import { mountFeedback } from "/static/js/feedback.js";
import { mountAsk } from "/static/js/qa.js";
import { mountFloor } from "/static/js/floor.js";
import { mountRollCall } from "/static/js/rollcall.js";

const $ = (id) => document.getElementById(id);
const status = (text, cls = "") => { $("status").textContent = text; $("status").className = `status ${cls}`; };
let { session, token } = params();

async function enter() {
  const info = await api(`/api/sessions/${session}`, { token });
  $("title").textContent = info.title;
  const place = info.township && info.township !== info.room ? `${info.township} · ${info.room}` : info.room || "";
  $("roomname").textContent = `${place} 教室`;
  document.title = `${info.room || "教室"} · ${info.title}`;
  $("join").hidden = true;
  $("classroom").hidden = false;
  const onRollCall = mountRollCall(session, token, { room: true, headcount: lastHeadcount });
  const player = new Player($("video"), {
    session, token, iceServers: info.ice_servers, heartbeatS: info.heartbeat_interval_s, onStatus: status,
    onSoundBlocked: () => ($("sound").hidden = false), onRollCall,
  });
  window.relayState = player;
  mountFeedback($("fbbox"), session, token);
  mountAsk($("qabox"), session, token);
  window.floor = mountFloor($("floorbox"), session, token, { iceServers: info.ice_servers });
  startWall(info).catch(() => {});
  loadCheckins().catch((e) => status(fmtError(e), "error"));
  $("unmute").onclick = () => { player.unmute(); $("sound").hidden = true; };
  await player.start();
}

// The lecturer's wall of rooms: this classroom's camera, small and cheap (~150 kbit/s), sent
// only to the lecturer. Without a camera the lecturer still sees the room's name and count.
async function startWall(info) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  window.wallFeed = await publish(session, token, stream, { iceServers: info.ice_servers, feed: "wall", maxBitrate: 150000 });
}

$("join").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("/api/rooms/join", { method: "POST", body: { code: $("code").value.trim() } });
    session = r.session_id;
    token = r.token;
    history.replaceState(null, "", `/room?session=${session}&token=${encodeURIComponent(token)}`);
    await enter();
  } catch (e) { status(fmtError(e), "error"); }
};

$("full").onclick = () => {
  document.body.classList.add("fullscreen");
  (document.documentElement.requestFullscreen ? document.documentElement.requestFullscreen() : Promise.resolve()).catch(() => {});
};
document.addEventListener("fullscreenchange", () => {
  if (!document.fullscreenElement) document.body.classList.remove("fullscreen");
});

// the number last reported (or typed): a roll call's answer starts from it
const lastHeadcount = () => {
  const n = parseInt($("count").value, 10);
  return n >= 0 ? n : null;
};

$("report").onclick = async () => {
  const count = parseInt($("count").value, 10);
  if (!(count >= 0)) { status("请输入到场人数", "error"); return; }
  try {
    await api(`/api/sessions/${session}/headcount`, { token, method: "POST", body: { count } });
    status(`已上报到场人数：${count} 人`, "ok");
  } catch (e) { status(fmtError(e), "error"); }
};

const checkedIn = new Map();  // member id -> name, checked in at this classroom
function listCheckedIn(memberId, name) {
  if (checkedIn.has(memberId)) return;
  checkedIn.set(memberId, name);
  const li = document.createElement("li");
  li.className = "on";
  li.textContent = `${memberId} ${name}`;
  $("checkins").appendChild(li);
  $("checked").textContent = `已签到 ${checkedIn.size} 人`;
}

async function checkIn(memberId) {
  const r = await api(`/api/sessions/${session}/checkin`, { token, method: "POST", body: { member_id: memberId } });
  listCheckedIn(r.member_id, r.name);
  status(`${r.name} 签到成功`, "ok");
  return r;
}

// After a reload the classroom's earlier check-ins are listed again, from the relay's record.
async function loadCheckins() {
  const r = await api(`/api/sessions/${session}/checkins`, { token });
  for (const c of r.checkins) listCheckedIn(c.member_id, c.name);
}

$("checkin").onclick = async () => {
  const memberId = $("member").value.trim();
  if (!memberId) { status("请输入党员编号", "error"); return; }
  try {
    await checkIn(memberId);
    $("member").value = "";
  } catch (e) { status(e.status === 404 ? "花名册中没有这个党员编号" : fmtError(e), "error"); }
};

// Search the township's roster by name (or the start of a member id): each match can be
// checked in from the list. Asked a quarter second after typing stops; only the latest
// search's answer is shown.
let findTimer = 0, findSeq = 0;
$("find").oninput = () => {
  clearTimeout(findTimer);
  findTimer = setTimeout(find, 250);
};
async function find() {
  const text = $("find").value.trim();
  const seq = ++findSeq;
  $("found").replaceChildren();
  if (!text) { $("findnote").textContent = ""; return; }
  try {
    const r = await api(`/api/sessions/${session}/roster?q=${encodeURIComponent(text)}`, { token });
    if (seq !== findSeq) return;
    for (const m of r.members) $("found").appendChild(matchItem(m));
    $("findnote").textContent = r.members.length === 0 ? `${r.township}花名册中没有“${text}”`
      : r.more ? `显示前 ${r.members.length} 位，请输入更完整的姓名` : `${r.township}：${r.members.length} 位`;
  } catch (e) { if (seq === findSeq) $("findnote").textContent = fmtError(e); }
}

function matchItem(m) {
  const li = document.createElement("li");
  li.className = "off";
  li.append(`${m.member_id} ${m.name} `);
  const b = document.createElement("button");
  b.textContent = checkedIn.has(m.member_id) ? "已签到" : "签到";
  b.disabled = checkedIn.has(m.member_id);
  b.onclick = async () => {
    b.disabled = true;
    try {
      await checkIn(m.member_id);
      b.textContent = "已签到";
      li.className = "on";
    } catch (e) { b.disabled = false; status(fmtError(e), "error"); }
  };
  li.append(b);
  return li;
}

if (session && token) enter().catch((e) => status(fmtError(e), "error"));
else $("join").hidden = false;
