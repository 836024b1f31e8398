import { params, api, fmtError } from "/static/js/relay.js";

const { token } = params();
const $ = (id) => document.getElementById(id);
const status = (t, cls = "") => { $("status").textContent = t; $("status").className = `status ${cls}`; };
const row = (tbody, cells) => { const tr = document.createElement("tr"); for (const c of cells) { const td = document.createElement("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c; tr.appendChild(td); } tbody.appendChild(tr); };
const states = { filed: "待审批", approved: "已批准", rejected: "已退回" };
let forTask = null, teachers = [], courses = [];
const iso = (v) => { const d = new Date(v); return d.toISOString(); };

function pickTeachers() {
  const c = courses.find((x) => String(x.id) === $("course").value);
  $("teacher").innerHTML = "";
  for (const t of teachers.filter((t) => !c || !c.teacher_ids.length || c.teacher_ids.includes(t.id))) {
    const o = document.createElement("option"); o.value = t.id; o.textContent = `${t.name}（${t.organisation}）`; $("teacher").appendChild(o);
  }
}

async function load() {
  teachers = await api("/api/teachers", { token });
  courses = await api("/api/courses", { token });
  $("course").innerHTML = "";
  for (const c of courses) { const o = document.createElement("option"); o.value = c.id; o.textContent = `${c.title}（${c.class_hours}课时）`; $("course").appendChild(o); }
  pickTeachers();
  const tasks = await api("/api/tasks", { token });
  const tb = $("tasks").querySelector("tbody"); tb.innerHTML = "";
  for (const t of tasks) {
    const b = document.createElement("button"); b.textContent = "选课备案"; b.className = "file-task";
    b.onclick = () => { forTask = t; $("formtitle").textContent = `任务备案：${t.theme}`; $("submit").textContent = "提交备案"; $("cancel").hidden = false; };
    row(tb, [t.theme, t.class_hours, `${t.period_from} 至 ${t.period_to}`, b]);
  }
  const mine = await api("/api/trainings", { token });
  const mb = $("mine").querySelector("tbody"); mb.innerHTML = "";
  for (const t of mine) row(mb, [t.kind === "assigned" ? "下单式" : "点单式", (courses.find((c) => c.id === t.course_id) || {}).title || t.course_id,
    new Date(t.starts_at * 1000).toLocaleString("zh-CN", { hour12: false }), `${states[t.state]}${t.reason ? `：${t.reason}` : ""}`]);
}

$("course").onchange = pickTeachers;
$("cancel").onclick = () => { forTask = null; $("formtitle").textContent = "点单：从师资库和课程库选课"; $("submit").textContent = "提交点单"; $("cancel").hidden = true; };
$("file").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = { course_id: parseInt($("course").value, 10), teacher_id: parseInt($("teacher").value, 10), starts_at: iso($("starts").value), ends_at: iso($("ends").value) };
  try {
    await api(forTask ? `/api/tasks/${forTask.id}/filings` : "/api/orders", { token, method: "POST", body });
    status(forTask ? "已备案，等待组织部审批" : "已点单，等待组织部审批", "ok");
    load();
  } catch (e) { status(e.status === 409 ? "时间冲突：该教师或本校教室已有安排" : fmtError(e), "error"); }
};

try {
  const schools = await api("/api/schools", { token });
  // The token names this school (its payload is readable; the server checks the signature).
  const payload = JSON.parse(atob(token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/")));
  const me = schools.find((s) => s.id === payload.u);
  if (me) { $("title").textContent = me.name; document.title = `${me.name} · 远程直播培训`; }
  await load();
} catch (e) { status(fmtError(e), "error"); }
