import { params, api, fmtError } from "/static/js/relay.js";

const { token } = params();
const $ = (id) => document.getElementById(id);
try {
  const me = await api("/api/me", { token });
  $("name").textContent = `${me.name}的学习`;
  $("sub").textContent = `${me.township} · 党员编号 ${me.member_id}`;
  $("hours").textContent = me.hours;
  if (!me.replays.length) $("status").textContent = "暂无回放。";
  // lectures whose hours the member has (live, or made up by replay since) say so
  const earned = new Map(me.credits.map((c) => [c.session_id, c.hours]));
  for (const r of me.replays) {
    const a = document.createElement("a");
    a.href = r.url;
    const done = earned.has(r.session_id) ? ` · ✓ 已计入 ${earned.get(r.session_id)} 学时` : "";
    a.textContent = `▶ ${r.title}（${Math.round(r.media_seconds / 60)} 分钟）${done}`;
    $("replays").appendChild(a);
  }
} catch (e) { $("status").textContent = fmtError(e); $("status").className = "status error"; }
