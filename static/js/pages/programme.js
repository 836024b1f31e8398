import { params, api, fmtError } from "/static/js/relay.js";

const { token } = params();
const $ = (id) => document.getElementById(id);
const status = (t, cls = "") => { $("status").textContent = t; $("status").className = `status ${cls}`; };
const row = (tbody, cells) => { const tr = document.createElement("tr"); for (const c of cells) { const td = document.createElement("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c; tr.appendChild(td); } tbody.appendChild(tr); return tr; };
const when = (s) => new Date(s * 1000).toLocaleString("zh-CN", { hour12: false });
const kinds = { assigned: "下单式", ordered: "点单式" };
const states = { filed: "待审批", approved: "已批准", rejected: "已退回" };
let teachers = [], courses = [], schools = [];

async function loadLibraries() {
  teachers = await api(`/api/teachers?q=${encodeURIComponent($("tq").value)}`, { token });
  courses = await api(`/api/courses?q=${encodeURIComponent($("cq").value)}`, { token });
  const tb = $("teachers").querySelector("tbody"); tb.innerHTML = "";
  for (const t of teachers) row(tb, [t.name, t.organisation, t.tier === "city" ? "市级" : "乡镇", t.tags.join("、"), t.contact || ""]);
  const cb = $("courses").querySelector("tbody"); cb.innerHTML = "";
  const tname = (id) => (teachers.find((t) => t.id === id) || {}).name || id;
  for (const c of courses) {
    const replays = document.createElement("button");
    replays.textContent = "查看回放";
    replays.onclick = async () => {
      const list = await api(`/api/courses/${c.id}/replays`, { token });
      const box = document.createElement("span");
      box.textContent = list.length ? list.map((r) => `${r.title}（${Math.round(r.media_seconds / 60)}分钟）`).join("；") : "暂无";
      replays.replaceWith(box);
    };
    row(cb, [c.title, c.topic, c.class_hours, c.teacher_ids.map(tname).join("、"), replays]);
  }
}

async function loadWork() {
  schools = await api("/api/schools", { token });
  const tasks = await api("/api/tasks", { token });
  const tb = $("tasks").querySelector("tbody"); tb.innerHTML = "";
  for (const t of tasks) row(tb, [t.theme, t.class_hours, `${t.period_from} 至 ${t.period_to}`, t.townships.join("、")]);
  const list = await api("/api/trainings", { token });
  const all = await api("/api/teachers", { token });
  const allc = await api("/api/courses", { token });
  const rb = $("trainings").querySelector("tbody"); rb.innerHTML = "";
  for (const t of list) {
    const actions = document.createElement("span");
    if (t.state === "filed") {
      const ok = document.createElement("button"); ok.textContent = "批准"; ok.className = "primary approve";
      ok.onclick = async () => {
        try {
          const r = await api(`/api/trainings/${t.id}/approve`, { token, method: "POST", body: {} });
          $("approved").hidden = false;
          $("approved").textContent = `已批准，讲座已创建：${r.session.title}\n主讲人：${r.session.urls.lecturer}\n手机观看：${r.session.urls.watch}`;
          loadWork();
        } catch (e) { status(fmtError(e), "error"); }
      };
      const no = document.createElement("button"); no.textContent = "退回";
      no.onclick = async () => {
        const reason = prompt("退回原因");
        if (!reason) return;
        try { await api(`/api/trainings/${t.id}/reject`, { token, method: "POST", body: { reason } }); loadWork(); }
        catch (e) { status(fmtError(e), "error"); }
      };
      actions.append(ok, " ", no);
    } else if (t.state === "rejected") actions.textContent = t.reason;
    else actions.textContent = `讲座 ${t.session_id}`;
    const st = document.createElement("span"); st.textContent = states[t.state]; st.className = `state-${t.state}`;
    row(rb, [kinds[t.kind], (schools.find((s) => s.id === t.school_id) || {}).name || t.school_id,
      (allc.find((c) => c.id === t.course_id) || {}).title || t.course_id,
      (all.find((x) => x.id === t.teacher_id) || {}).name || t.teacher_id,
      `${when(t.starts_at)}`, st, actions]);
  }
  const rot = await api("/api/rotation", { token });
  const ro = $("rotation").querySelector("tbody"); ro.innerHTML = "";
  for (const r of rot.townships) row(ro, [r.township, r.classrooms, r.members, r.met, r.share == null ? "—" : `${Math.round(r.share * 100)}%`, r.behind.length]);
}

$("task").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/tasks", { token, method: "POST", body: {
      theme: $("theme").value.trim(), class_hours: parseFloat($("hours").value),
      period_from: $("from").value, period_to: $("to").value,
    } });
    status("任务已下达到各乡镇党校", "ok");
    loadWork();
  } catch (e) { status(fmtError(e), "error"); }
};
$("tsearch").onsubmit = (ev) => { ev.preventDefault(); loadLibraries(); };
$("csearch").onsubmit = (ev) => { ev.preventDefault(); loadLibraries(); };
for (const [input, what] of [["timport", "teachers"], ["cimport", "courses"]]) {
  $(input).onchange = async () => {
    const file = $(input).files[0];
    if (!file) return;
    const type = file.name.endsWith(".xlsx") ? "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" : "text/csv";
    const resp = await fetch(`/api/${what}/import`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": type }, body: file });
    const r = await resp.json();
    status(resp.ok ? `导入 ${r.imported}/${r.rows} 行` + (r.errors.length ? `；错误：${r.errors.slice(0, 5).map((e) => `第${e.row}行 ${e.reason}`).join("；")}` : "") : fmtError(r.error), r.errors && r.errors.length ? "error" : "ok");
    loadLibraries();
  };
}

try { await loadLibraries(); await loadWork(); } catch (e) { status(fmtError(e), "error"); }
