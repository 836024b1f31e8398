// Roll call (点名): when the relay asks, a member's phone shows one large 到 button, with a
// sound and a buzz (elderly members: big, loud, hard to miss); a classroom's page asks for the
// people present. The answer goes on this page's own connection: the relay counts it only
// while media reaches that connection.
import { api, fmtError } from "/static/js/relay.js";

export function mountRollCall(session, token, { room = false, headcount = () => null } = {}) {
  const done = new Set(); // calls answered (or closed) on this page
  let shown = null;
  const box = document.createElement("div");
  box.className = "rollcall";
  box.hidden = true;
  box.setAttribute("role", "dialog");
  const card = document.createElement("div");
  card.className = "rollcall-card";
  const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);
  card.append(
    el("h2", { textContent: "点名" }),
    el("p", { className: "rc-note", textContent: room ? "请上报此刻在场人数" : "请点击下方按钮签到" }),
  );
  if (room) {
    card.append(el("input", { id: "rc-count", type: "number", min: "0", max: "10000", inputMode: "numeric" }));
    card.append(el("button", { id: "rc-here", className: "primary big", textContent: "应答" }));
  } else {
    const here = el("button", { id: "rc-here", className: "here", textContent: "到" });
    here.setAttribute("aria-label", "到");
    card.append(here);
  }
  card.append(el("p", { id: "rc-time", className: "rc-time" }));
  box.append(card);
  document.body.appendChild(box);
  const $ = (id) => box.querySelector(`#${id}`);
  let timer = null;

  function beep() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      for (let i = 0; i < 3; i++) {
        const o = ctx.createOscillator(), g = ctx.createGain();
        o.frequency.value = 880;
        g.gain.value = 0.4;
        o.connect(g).connect(ctx.destination);
        o.start(ctx.currentTime + i * 0.35);
        o.stop(ctx.currentTime + i * 0.35 + 0.2);
      }
    } catch (e) { /* no sound: the screen says it */ }
    if (navigator.vibrate) navigator.vibrate([300, 150, 300]);
  }

  function close(text) {
    clearInterval(timer);
    $("rc-time").textContent = text;
    setTimeout(() => { box.hidden = true; shown = null; }, 2500);
  }

  // {id, closes_in_s} from the relay; resource: this page's connection
  return function onRollCall(call, resource) {
    if (!call || done.has(call.id) || shown === call.id || !resource) return;
    shown = call.id;
    box.hidden = false;
    const closes = Date.now() + call.closes_in_s * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((closes - Date.now()) / 1000));
      $("rc-time").textContent = left ? `剩余 ${left} 秒` : "点名已结束";
      if (!left) { done.add(call.id); close("点名已结束"); }
    };
    clearInterval(timer);
    timer = setInterval(tick, 1000);
    tick();
    $("rc-here").disabled = false;
    if (room) { const n = headcount(); if (n != null) $("rc-count").value = n; }
    beep();
    $("rc-here").onclick = async () => {
      const body = { resource };
      if (room) body.count = Number($("rc-count").value);
      $("rc-here").disabled = true;
      try {
        await api(`/api/sessions/${session}/rollcalls/${call.id}/answers`, { token, method: "POST", body });
        done.add(call.id);
        close("已应答 ✓");
      } catch (e) {
        if (e.status === 410) { done.add(call.id); close("点名已结束"); return; }
        $("rc-here").disabled = false;
        $("rc-time").textContent = fmtError(e);
      }
    };
  };
}
