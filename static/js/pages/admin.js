import { params, api, download, fmtError } from "/static/js/relay.js";

const { token } = params();
const $ = (id) => document.getElementById(id);
const gb = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);
const states = { scheduled: "未开始", live: "直播中", ended: "已结束" };
const jobs = { queued: "排队中", running: "生成中", done: "已生成", failed: "失败" };

function fill(table, rows) {
  const tb = $(table).querySelector("tbody");
  tb.innerHTML = "";
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    tb.appendChild(tr);
  }
}

async function refreshCluster() {
  const c = await api("/api/admin/cluster", { token });
  $("mode").textContent = c.mode === "cluster"
    ? `集群模式 · 本节点 ${c.node} · Redis ${c.redis_up ? "正常" : "不可达（直播不受影响）"}`
    : `单节点 · ${c.workers.length} 个转发进程`;
  $("nodes").hidden = c.mode !== "cluster";
  if (c.nodes) fill("nodes", c.nodes.map((n) => [n.id + (n.home ? "（主）" : ""), n.url, n.viewers, n.workers, n.share]));
  fill("workers", c.workers.map((w) => [`#${w.worker}`, w.up ? "运行" : "重启中", w.viewers, w.packets_forwarded ?? "—", w.restarts]));
  const l = c.ledger;
  const ms = (v) => (v == null ? "> 2.5 秒" : `≤ ${v} 毫秒`);
  if (l && "events" in l) {
    const took = l.events ? `99% 的记录落盘用时 ${ms(l.durable_p99_ms)}（写盘本身 ${ms(l.write_p99_ms)}）` : "尚无新记录";
    $("ledger").textContent = `考勤账本（本次启动以来）：已记录 ${l.events} 条，待写入 ${l.pending} 条；${took}`;
  } else if (l) {
    $("ledger").textContent = `考勤记录（先存本节点磁盘，再经 Redis 送往主节点账本）：待主节点确认 ${l.backlog} 条，已发送 ${l.sent} 条，重发 ${l.resent} 条`;
  }
}

async function refresh() {
  try {
    const o = await api("/api/admin/overview", { token });
    $("recs").textContent = `${o.storage.recordings} 个 · ${gb(o.storage.recordings_bytes)}`;
    $("reps").textContent = `${o.storage.replays} 个 · ${gb(o.storage.replays_bytes)}`;
    $("free").textContent = gb(o.storage.free_bytes);
    $("fastpath").textContent = o.fastpath || "-";
    const scope = $("linkscope");
    if (scope.options.length === 1) {
      for (const t of o.townships) scope.add(new Option(t, t));
      const dir = await api("/api/classrooms", { token }).catch(() => ({ classrooms: [] }));
      const per = (t) => dir.classrooms.filter((c) => c.township === t).length;
      $("classrooms").options[1].text = `全部教室（${dir.classrooms.length} 个，含教育基地、教学点）`;
      for (const t of o.townships) $("classrooms").add(new Option(`${t}的全部教室（${per(t)} 个）`, `t:${t}`));
    }
    const tb = $("sessions").querySelector("tbody");
    tb.innerHTML = "";
    for (const s of o.sessions) {
      const tr = document.createElement("tr");
      const td = (text) => { const c = document.createElement("td"); c.textContent = text; tr.appendChild(c); return c; };
      // live in the record with nothing arriving: a lecturer who left without ending it
      const gone = s.status === "live" && s.media === "none";
      td(s.title);
      td(gone ? "已开始 · 主讲人未推流" : states[s.status] || s.status).className = gone ? "warn" : "";
      td(s.viewers);
      const rule = td("");
      const share = document.createElement("button");
      share.textContent = `满 ${Math.round(s.credit_threshold * 100)}%`;
      share.title = "修改计入学时所需的观看比例";
      share.onclick = () => changeShare(s);
      const replay = document.createElement("button");
      replay.textContent = s.replay_credit ? "回放计入" : "回放不计入";
      replay.title = "切换回放时长是否计入学时";
      replay.onclick = () => changeRule(s, { replay_credit: !s.replay_credit },
        s.replay_credit ? "改为：回放时长不计入学时？" : "改为：回放时长计入学时？");
      rule.append(share, " ", replay);
      td(s.record ? gb(s.recording_bytes) : "不录制");
      const job = td("");
      if (s.replay) {
        job.textContent = `${jobs[s.replay.state] || s.replay.state} `;
        if (s.replay.state === "running") {
          const p = document.createElement("progress");
          p.max = 1; p.value = s.replay.progress;
          job.appendChild(p);
        }
        if (s.replay.state === "failed") job.title = s.replay.error;
      } else job.textContent = "—";
      const links = td("");
      const q = `session=${s.id}&token=${encodeURIComponent(token)}`;
      links.innerHTML = `<a href="/audit?${q}">考勤审计</a>` + (s.replay && s.replay.state === "done" ? ` · <a href="/replay?${q}">回放</a>` : "");
      // each member's personal watch link, for distribution by message (a ledger event)
      const personal = document.createElement("button");
      personal.textContent = "党员链接";
      personal.title = "下载花名册中每名党员的个人观看链接（Excel），用于短信或微信分发；下载记入考勤账本";
      personal.onclick = () => personalLinks(s);
      links.append(" ", personal);
      if (s.status !== "ended") {
        const end = document.createElement("button");
        end.textContent = "结束讲座";
        end.onclick = () => endLecture(s);
        links.append(" ", end);
      }
      if (s.replay && s.replay.state === "failed") {
        const b = document.createElement("button");
        b.textContent = "重新生成";
        b.onclick = async () => { await api(`/api/sessions/${s.id}/replay`, { token, method: "POST", body: {} }); refresh(); };
        links.appendChild(b);
      }
      tb.appendChild(tr);
    }
    await refreshCluster();
    if ($("status").dataset.from === "refresh") { $("status").textContent = ""; delete $("status").dataset.from; }
  } catch (e) {
    $("status").textContent = fmtError(e); $("status").className = "status error";
    $("status").dataset.from = "refresh"; // cleared by the next refresh that works
  }
}

// A session's credit rule (学时认定), before, during or after the lecture: the relay records
// each change in the session's ledger and, after the lecture, works its members' hours out again.
async function changeRule(s, body, question) {
  if (!confirm(`${s.title}\n${question}\n（修改将记入考勤账本；讲座已结束的，将重新认定学时）`)) return;
  try {
    const r = await api(`/api/sessions/${s.id}/credit-rule`, { token, method: "PATCH", body });
    $("status").className = "status ok";
    $("status").textContent = `已修改：${s.title} · 满 ${Math.round(r.credit_threshold * 100)}% · ${r.replay_credit ? "回放计入" : "回放不计入"}`
      + (r.credited == null ? "" : `，现有 ${r.credited} 人计入学时`);
    refresh();
  } catch (e) { $("status").textContent = fmtError(e); $("status").className = "status error"; }
}

async function personalLinks(s) {
  const township = $("linkscope").value;
  const query = township ? `&township=${encodeURIComponent(township)}` : "";
  const name = township ? `${s.title}-${township}` : s.title;
  try {
    await download(`/api/sessions/${s.id}/links?format=xlsx${query}`, token, `党员观看链接-${name}.xlsx`);
    $("status").className = "status ok";
    $("status").textContent = `已下载：${s.title} ${township || "全部乡镇"}党员的个人观看链接（本次下载已记入考勤账本）`;
  } catch (e) {
    const why = { 409: "花名册为空：请先导入党员花名册（lecture-relay roster import 文件）" };
    if (township) why[404] = `花名册中没有${township}的党员`;
    $("status").textContent = why[e.status] || fmtError(e);
    $("status").className = "status error";
  }
}

// For a lecturer who left without ending the lecture: ends it as the lecturer page would
// (connections closed, the record signed and sealed, hours credited) and shows the receipt.
async function endLecture(s) {
  if (!confirm(`结束讲座：${s.title}？\n所有观看连接将断开，考勤记录签名封存，并认定学时。`)) return;
  try {
    const r = await api(`/api/sessions/${s.id}/end`, { token, method: "POST", body: {} });
    $("status").className = "status ok";
    $("status").textContent = `已结束：${s.title}。签名回执：事件数 ${r.receipt.seq}，链头 ${r.receipt.head.slice(0, 16)}…，密钥指纹 ${r.receipt.key_fp}（完整回执见考勤审计页）`;
    refresh();
  } catch (e) { $("status").textContent = fmtError(e); $("status").className = "status error"; }
}

function changeShare(s) {
  const now = Math.round(s.credit_threshold * 100);
  const text = prompt(`${s.title}\n观看满讲座时长的百分之几计入学时？（1-100）`, String(now));
  if (text == null) return;
  const pct = Number(text.trim().replace(/%$/, ""));
  if (!Number.isInteger(pct) || pct < 1 || pct > 100) {
    $("status").textContent = "请输入 1 到 100 之间的整数"; $("status").className = "status error";
    return;
  }
  if (pct !== now) changeRule(s, { credit_threshold: pct / 100 }, `改为：观看满 ${pct}% 计入学时？`);
}

$("create").onsubmit = async (ev) => {
  ev.preventDefault();
  const where = $("classrooms").value;
  const rooms = where.startsWith("t:") ? { townships: [where.slice(2)] } : { classrooms: where };
  const planned = Number($("rcplan").value) || 0;
  const calls = { rollcalls_required: Number($("rcneed").value) || 0 };
  if (planned > 0) calls.rollcall_plan = { count: planned, from_minute: 5, to_minute: 85 };
  try {
    const r = await api("/api/sessions", { token, method: "POST", body: {
      title: $("title").value.trim(), video_codec: $("codec").value,
      record: $("record").checked, replay_credit: $("credit").checked,
      credit_threshold: Number($("share").value) / 100, ...rooms, ...calls,
    } });
    $("created").hidden = false;
    $("created").textContent = `已创建：${r.title}\n主讲人：${r.urls.lecturer}\n手机观看：${r.urls.watch}\n${r.rooms.length} 个教室，教室码：${r.rooms.map((x) => `${x.kind === "school" ? x.name : `${x.township}${x.name}`} ${x.code}`).join("，")}`;
    refresh();
  } catch (e) { $("status").textContent = fmtError(e); $("status").className = "status error"; }
};

refresh();
setInterval(refresh, 3000);
