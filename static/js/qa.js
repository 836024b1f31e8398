// Q&A (提问): members and rooms ask; the lecturer moderates. Polls every few seconds.
import { api, fmtError } from "/static/js/relay.js";

function item(q, extra) {
  const li = document.createElement("li");
  li.className = "question";
  li.dataset.id = q.id;
  const head = document.createElement("div");
  head.textContent = `${q.pinned ? "📌 " : ""}${q.name}：${q.text}`;
  li.appendChild(head);
  if (q.answer) {
    const a = document.createElement("div");
    a.className = "status ok answer";
    a.textContent = `答：${q.answer}`;
    li.appendChild(a);
  }
  if (extra) li.appendChild(extra(q));
  return li;
}

// For members and rooms: ask, and read what is visible.
export function mountAsk(container, session, token, { canAsk = true } = {}) {
  container.innerHTML = `<h3>提问</h3>${canAsk ? `<form class="row" id="askform">
    <input id="asktext" maxlength="500" placeholder="向主讲人提问" class="flex1">
    <button class="primary" type="submit">提问</button></form>` : "<p class='status'>登记身份后可以提问。</p>"}
    <ul id="qlist" class="rooms"></ul>`;
  const list = container.querySelector("#qlist");
  async function refresh() {
    try {
      const qs = await api(`/api/sessions/${session}/questions`, { token });
      list.replaceChildren(...qs.map((q) => item(q)));
    } catch (e) { /* keep the last list */ }
  }
  const form = container.querySelector("#askform");
  if (form) {
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const input = container.querySelector("#asktext");
      try {
        await api(`/api/sessions/${session}/questions`, { token, method: "POST", body: { text: input.value } });
        input.value = "";
        refresh();
      } catch (e) { input.placeholder = fmtError(e); }
    };
  }
  refresh();
  return setInterval(refresh, 4000);
}

// For the lecturer: every question, with hide/show, pin/unpin and answer.
export function mountModeration(container, session, token) {
  container.innerHTML = `<h3>提问管理</h3><ul id="modlist" class="rooms"></ul>`;
  const list = container.querySelector("#modlist");
  async function act(q, action, body) {
    try {
      await api(`/api/sessions/${session}/questions/${q.id}/${action}`, { token, method: "POST", body: body || {} });
      refresh();
    } catch (e) { /* the next refresh shows the state */ }
  }
  function controls(q) {
    const span = document.createElement("span");
    const button = (label, action, cls) => {
      const b = document.createElement("button");
      b.textContent = label; b.className = cls || ""; b.dataset.action = action;
      b.onclick = () => {
        if (action === "answer") {
          const answer = prompt("回答");
          if (answer) act(q, "answer", { answer });
        } else act(q, action);
      };
      span.append(b, " ");
    };
    button(q.hidden ? "显示" : "隐藏", q.hidden ? "show" : "hide");
    button(q.pinned ? "取消置顶" : "置顶", q.pinned ? "unpin" : "pin");
    button("回答", "answer");
    return span;
  }
  async function refresh() {
    try {
      const qs = await api(`/api/sessions/${session}/questions`, { token });
      list.replaceChildren(...qs.map((q) => {
        const li = item(q, controls);
        if (q.hidden) li.style.opacity = "0.5";
        return li;
      }));
    } catch (e) { /* keep */ }
  }
  refresh();
  return setInterval(refresh, 3000);
}
