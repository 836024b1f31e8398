import { params, api, download, fmtError } from "/static/js/relay.js";

const { session, token } = params();
const $ = (id) => document.getElementById(id);
const cell = (tr, text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; };

function drawChart(points) {
  const c = $("chart");
  const ctx = c.getContext("2d");
  const W = c.width, H = c.height, pad = 36;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px sans-serif";
  ctx.fillStyle = "#666";
  if (!points.length) { ctx.fillText("暂无观看记录", W / 2 - 40, H / 2); return; }
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1000);
  const max = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => pad + (W - 2 * pad) * (t - t0) / (t1 - t0);
  const y = (n) => H - pad - (H - 2 * pad) * n / max;
  ctx.strokeStyle = "#ccc";
  ctx.beginPath(); ctx.moveTo(pad, pad); ctx.lineTo(pad, H - pad); ctx.lineTo(W - pad, H - pad); ctx.stroke();
  ctx.fillText(String(max), 4, pad + 4);
  ctx.fillText("0", 20, H - pad);
  const fmt = (t) => new Date(t).toLocaleTimeString("zh-CN", { hour12: false });
  ctx.fillText(fmt(t0), pad, H - 10);
  ctx.fillText(fmt(t1), W - pad - 60, H - 10);
  ctx.strokeStyle = "#b71c1c";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x(points[0][0]), y(0));
  let last = 0;
  for (const [t, n] of points) { ctx.lineTo(x(t), y(last)); ctx.lineTo(x(t), y(n)); last = n; }
  ctx.lineTo(x(t1), y(last));
  ctx.stroke();
}

try {
  const a = await api(`/api/sessions/${session}/audit`, { token });
  $("title").textContent = `考勤审计：${a.title}`;
  $("participants").textContent = a.participants;
  $("credited").textContent = a.credited;
  // under a minute in seconds (a lecture cut short, a test), else in minutes
  $("length").textContent = (a.length_s < 60 ? `${a.length_s} 秒` : `${Math.round(a.length_s / 60)} 分钟`)
    + (a.live ? "（直播中，截至此刻）" : "");
  $("verified").textContent = a.verify.ok ? "完整" : "被改动";
  $("verified").style.color = a.verify.ok ? "var(--ok)" : "var(--red)";
  $("replayed").textContent = a.replay_participants
    ? `${a.replay_participants} 人 · ${Math.round(a.replay_seconds / 60)} 分钟` : "0";
  const ruleText = (pct, replay) => `满 ${pct}% · 回放${replay ? "计入" : "不计入"}`;
  $("rule").textContent = ruleText(Math.round(a.credit_threshold * 100), a.replay_credit);
  if (a.policy_changes.length) { // each change of the rule, from the ledger
    $("rulechanges").hidden = false;
    $("rulechanges").textContent = "认定标准的修改：" + a.policy_changes
      .map((c) => `${c.at.replace("T", " ").slice(0, 16)} ${c.by} 设为${ruleText(c.threshold_percent, c.replay_credit)}`)
      .join("；");
  }
  // connections whose page sends no heartbeat of ours (a standard WHEP player): the rule
  $("relayonly").textContent = "无页面心跳的播放器（第三方 WHEP）只有中继证据：其时长单列为“无页面证据秒数”，不计入学时"
    + (a.relay_only_participants ? `（本场 ${a.relay_only_participants} 人）。` : "。");
  if (a.rollcalls.length) { // 点名: each call and how many members answered it
    $("rollcalls").hidden = false;
    $("rollcalls").textContent = `点名 ${a.rollcalls.length} 次`
      + (a.rollcalls_required ? `，须应答 ${Math.min(a.rollcalls_required, a.rollcalls.length)} 次方计入学时` : "")
      + "：" + a.rollcalls.map((c) => `${c.at.slice(11, 16)} 应答 ${c.answered} 人`).join("；");
  }
  drawChart(a.concurrency);
  const tb = $("townships").querySelector("tbody");
  for (const t of a.townships) {
    const tr = document.createElement("tr");
    cell(tr, t.township); cell(tr, t.expected); cell(tr, t.present); cell(tr, t.replayed); cell(tr, t.credited);
    cell(tr, `${t.classrooms_connected}/${t.classrooms}`); cell(tr, t.headcount); cell(tr, t.checkins);
    const td = cell(tr, "");
    if (t.absent.length) {
      const d = document.createElement("details");
      const s = document.createElement("summary");
      s.textContent = `${t.absent.length} 人`;
      d.appendChild(s);
      d.appendChild(document.createTextNode(t.absent.map((m) => `${m.member_id} ${m.name}${m.replayed ? "（已回放补学）" : ""}`).join("、")));
      td.appendChild(d);
    } else td.textContent = "无";
    const miss = cell(tr, "");
    if (t.missed && t.missed.length) {
      const d = document.createElement("details");
      const s = document.createElement("summary");
      s.textContent = `${t.missed.length} 人`;
      d.append(s, document.createTextNode(t.missed.map((m) => `${m.member_id} ${m.name}（应答 ${m.answered}/${a.rollcalls.length}）`).join("、")));
      miss.appendChild(d);
    } else miss.textContent = a.rollcalls.length ? "无" : "—";
    tb.appendChild(tr);
  }
  // classrooms by township: a lecture may have 300, so past 30 each township's are shown
  // when its row is opened
  const rb = $("rooms").querySelector("tbody");
  const towns = new Map();
  for (const r of a.rooms) { if (!towns.has(r.township)) towns.set(r.township, []); towns.get(r.township).push(r); }
  const folded = a.rooms.length > 30;
  const KIND = { school: "乡镇党校", base: "教育基地", point: "教学点" };
  for (const [town, rooms] of towns) {
    const rows = rooms.map((r) => {
      const tr = document.createElement("tr");
      cell(tr, r.room); cell(tr, KIND[r.kind] || r.kind); cell(tr, r.connected ? "是" : "否");
      cell(tr, r.headcount == null ? "未报" : r.headcount);
      cell(tr, r.flag ? `${r.checkins}（多于报到人数）` : r.checkins, r.flag ? "flag" : "");
      tr.hidden = folded;
      return tr;
    });
    if (folded) {
      const head = document.createElement("tr");
      head.className = "group";
      const on = rooms.filter((r) => r.connected).length;
      const heads = rooms.reduce((n, r) => n + (r.headcount || 0), 0);
      const flagged = rooms.some((r) => r.flag);
      const td = cell(head, `▸ ${town}：${rooms.length} 个教室，${on} 个已连接，报到 ${heads} 人${flagged ? "（有签到多于报到人数的教室）" : ""}`);
      td.colSpan = 5;
      head.onclick = () => {
        const open = rows[0].hidden;
        rows.forEach((tr) => (tr.hidden = !open));
        td.textContent = (open ? "▾" : "▸") + td.textContent.slice(1);
      };
      rb.appendChild(head);
    }
    rows.forEach((tr) => rb.appendChild(tr));
  }
  if (a.receipt) {
    const r = a.receipt;
    $("receipt").textContent = `会话 ${r.session}\n事件数 ${r.seq}\n链头 ${r.head}\n签名 ${r.signature}\n公钥 ${r.public_key}\n指纹 ${r.key_fp}`;
    $("qr").innerHTML = a.receipt_qr_svg;
  }
  for (const fmt of ["csv", "xlsx", "json"]) {
    $(fmt).onclick = async (ev) => {
      ev.preventDefault();
      try {
        await download(`/api/sessions/${session}/attendance?format=${fmt}`, token, `attendance-${session}.${fmt}`);
      } catch (e) { $("status").textContent = fmtError(e); $("status").className = "status error"; }
    };
  }
  // the newest events (this page's own reading among them) are signed within a minute
  const tail = a.verify.unsigned ? `最新 ${a.verify.unsigned} 条记录将在一分钟内签名。` : "";
  // a lecture under way is read as of now: the page says so (a reload reads it again)
  const now = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  const when = !a.start ? (a.end ? "讲座未开讲即已结束（主讲人未推流）。" : "讲座尚未开始。")
    : !a.end ? `讲座进行中：以下为截至 ${now} 的记录，刷新页面可更新。` : "";
  $("status").textContent = when + (a.verify.ok ? `记录完整，签名有效。${tail}` : `记录核验失败：${a.verify.problems.join("；")}`);
  $("status").className = a.verify.ok ? "status ok" : "status error";
} catch (e) {
  $("status").textContent = fmtError(e);
  $("status").className = "status error";
}
