// The after-lecture feedback form (课后评价): rating, comment, and the course's quiz.
import { api, fmtError } from "/static/js/relay.js";

export async function mountFeedback(container, session, token) {
  let info = { quiz: [] };
  try { info = await api(`/api/sessions/${session}/course`, { token }); } catch (e) { /* no course */ }
  container.innerHTML = "";
  const details = document.createElement("details");
  details.id = "feedback";
  const summary = document.createElement("summary");
  summary.textContent = `课后评价${info.course ? `：${info.course}` : ""}`; // a title is text, never markup
  details.appendChild(summary);
  const form = document.createElement("form");
  form.innerHTML = `<p>请为本次讲座打分：</p><div class="row stars"></div>
    <div class="row"><textarea id="fbcomment" rows="3" class="fill" placeholder="意见和建议（可不填）"></textarea></div>
    <div class="quiz"></div><div class="row"><button class="primary" type="submit">提交评价</button></div>
    <p class="status" id="fbstatus"></p>`;
  let rating = 0;
  const stars = form.querySelector(".stars");
  for (let i = 1; i <= 5; i++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = `${i} 分`; b.dataset.rating = i;
    b.onclick = () => { rating = i; stars.querySelectorAll("button").forEach((x) => x.classList.toggle("primary", +x.dataset.rating <= i)); };
    stars.appendChild(b);
  }
  const quiz = form.querySelector(".quiz");
  info.quiz.forEach((q, qi) => {
    const p = document.createElement("p"); p.textContent = `${qi + 1}. ${q.question}`; quiz.appendChild(p);
    q.options.forEach((opt, oi) => {
      const l = document.createElement("label"); l.style.marginRight = "1em";
      l.innerHTML = `<input type="radio" name="q${qi}" value="${oi}"> `; l.append(opt); quiz.appendChild(l);
    });
  });
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const out = form.querySelector("#fbstatus");
    if (!rating) { out.textContent = "请先选择分数"; out.className = "status error"; return; }
    const answers = info.quiz.map((_, qi) => { const c = form.querySelector(`input[name=q${qi}]:checked`); return c ? +c.value : -1; });
    try {
      const r = await api(`/api/sessions/${session}/feedback`, { token, method: "POST",
        body: { rating, comment: form.querySelector("#fbcomment").value, answers } });
      out.textContent = r.score == null ? "感谢您的评价！" : `感谢您的评价！答题正确率 ${Math.round(r.score * 100)}%`;
      out.className = "status ok";
      form.querySelector("button[type=submit]").disabled = true;
    } catch (e) { out.textContent = e.status === 409 ? "您已经评价过了" : fmtError(e); out.className = "status error"; }
  };
  details.appendChild(form);
  container.appendChild(details);
}
