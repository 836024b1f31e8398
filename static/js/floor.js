// 举手发言: raise a hand (rooms; members when allowed), speak when the lecturer grants the
// floor, and watch whoever has the floor beside the lecture. The lecturer's page gets the
// queue with 准许发言 / 结束发言. Polls the floor every 2 s.
import { api, publish, watch, fmtError } from "/static/js/relay.js";

const POLL_MS = 2000;

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
}

export function mountFloor(box, session, token, { chair = false, canRaise = true, role = "room", iceServers = [] } = {}) {
  const status = el("span", { className: "status" });
  const hand = el("button", { textContent: "举手发言", id: "raise-hand" });
  const giveBack = el("button", { textContent: "结束发言", id: "end-my-turn", hidden: true });
  const queue = el("ul", { className: "rooms", id: "hands" });
  const speakers = el("div", { className: "speakers", id: "speakers" });
  const preview = el("video", { muted: true, autoplay: true, playsInline: true, className: "tile", hidden: true });
  box.append(el("h3", { textContent: "举手发言" }));
  if (!chair && canRaise) box.append(el("div", { className: "row" }, hand, giveBack, status));
  if (chair) {
    const max = el("select", { id: "max-speakers" }, ...[1, 2, 3, 4].map((n) => el("option", { value: n, textContent: `同时发言 ${n} 人` })));
    const members = el("label", {}, el("input", { type: "checkbox", id: "members-raise" }), " 允许党员举手");
    max.onchange = () => api(`/api/sessions/${session}/floor`, { token, method: "PATCH", body: { max_speakers: Number(max.value) } }).catch(show);
    members.firstChild.onchange = (ev) => api(`/api/sessions/${session}/floor`, { token, method: "PATCH", body: { members_may_raise: ev.target.checked } }).catch(show);
    box.append(el("div", { className: "row" }, max, members, status), queue);
  }
  box.append(preview, speakers);

  let me = null;
  let mine = null; // our own publication while we have the floor
  const watching = new Map(); // who -> { view, tile }
  let raised = false;

  function show(e) { status.textContent = fmtError(e); status.className = "status error"; }

  hand.onclick = async () => {
    try {
      if (raised) await api(`/api/sessions/${session}/hands`, { token, method: "DELETE" });
      else await api(`/api/sessions/${session}/hands`, { token, method: "POST", body: {} });
      await poll();
    } catch (e) { show(e); }
  };
  giveBack.onclick = async () => {
    try { await api(`/api/sessions/${session}/floor/${encodeURIComponent(me)}`, { token, method: "DELETE" }); } catch (e) { /* ended already */ }
    await stopSpeaking();
    await poll();
  };

  async function startSpeaking() {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    mine = await publish(session, token, stream, { iceServers, feed: "speaker", maxBitrate: 600000 });
    mine.stream = stream;
    preview.srcObject = stream;
    preview.hidden = false;
    giveBack.hidden = false;
  }

  async function stopSpeaking() {
    if (!mine) return;
    const m = mine;
    mine = null;
    m.stream.getTracks().forEach((t) => t.stop());
    await m.stop();
    preview.hidden = true;
    giveBack.hidden = true;
  }

  async function follow(speaker) {
    if (watching.has(speaker.who)) return;
    const video = el("video", { autoplay: true, playsInline: true, className: "tile" });
    const tile = el("figure", { className: "speaker" }, video, el("figcaption", { textContent: `${speaker.name} 发言中` }));
    tile.dataset.who = speaker.who;
    watching.set(speaker.who, { view: null, tile });
    speakers.append(tile);
    try {
      const view = await watch(session, token, { iceServers, feed: `speaker:${speaker.who}` });
      watching.get(speaker.who).view = view;
      video.srcObject = view.stream;
      video.play().catch(() => { video.muted = true; video.play().catch(() => {}); });
    } catch (e) { watching.delete(speaker.who); tile.remove(); }
  }

  function unfollow(who) {
    const w = watching.get(who);
    if (!w) return;
    watching.delete(who);
    if (w.view) w.view.stop();
    w.tile.remove();
  }

  function drawQueue(f) {
    queue.innerHTML = "";
    for (const h of f.hands) {
      const b = el("button", { textContent: "准许发言", className: "grant" });
      b.onclick = () => api(`/api/sessions/${session}/floor`, { token, method: "POST", body: { who: h.who } }).then(poll, show);
      queue.append(el("li", { className: "off" }, `${h.name} 举手 `, b));
    }
    for (const s of f.speakers) {
      const b = el("button", { textContent: "结束发言", className: "end-turn" });
      b.onclick = () => api(`/api/sessions/${session}/floor/${encodeURIComponent(s.who)}`, { token, method: "DELETE" }).then(poll, show);
      queue.append(el("li", { className: "on" }, `${s.name} ${s.live ? "发言中" : "准备中"} `, b));
    }
  }

  async function poll() {
    let f;
    try { f = await api(`/api/sessions/${session}/floor`, { token }); } catch (e) { return; }
    me = f.me || null;
    if (chair) drawQueue(f);
    raised = Boolean(f.my_hand);
    hand.textContent = raised ? "放下手" : "举手发言";
    hand.hidden = Boolean(f.i_have_the_floor) || (role === "member" && !f.members_may_raise && !raised);
    if (!chair && canRaise) {
      status.className = "status";
      status.textContent = f.i_have_the_floor ? "您正在发言" : raised ? `已举手，排第 ${f.my_hand} 位` : "";
    }
    if (f.i_have_the_floor && !mine) {
      try { await startSpeaking(); } catch (e) { show(e); }
    } else if (!f.i_have_the_floor && mine) {
      await stopSpeaking();
    }
    const live = new Set(f.speakers.filter((s) => s.live && s.who !== me).map((s) => s.who));
    for (const s of f.speakers) if (live.has(s.who)) follow(s);
    for (const who of [...watching.keys()]) if (!live.has(who)) unfollow(who);
  }

  poll();
  setInterval(poll, POLL_MS);
  return { poll };
}
