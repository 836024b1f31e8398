import { params, api, fmtError } from "/static/js/relay.js";
import { Player } from "/static/js/player.js";
import { mountFeedback } from "/static/js/feedback.js";
import { mountAsk } from "/static/js/qa.js";
import { mountFloor } from "/static/js/floor.js";
import { mountMine } from "/static/js/mine.js";
import { mountRollCall } from "/static/js/rollcall.js";

const { session } = params();
let { token } = params();
const $ = (id) => document.getElementById(id);
// A token's claims (its first part): the page reads its role and expiry, the relay checks it.
const claims = (t) => JSON.parse(atob(t.split(".")[0].replace(/-/g, "+").replace(/_/g, "/")));
// A member token kept on this phone, while it has a minute left.
const readKept = (key) => {
  try {
    const t = localStorage.getItem(key);
    if (t && claims(t).e > Date.now() / 1000 + 60) return t;
    if (t) localStorage.removeItem(key);
  } catch (e) { /* private mode, or not a token */ }
  return null;
};
const status = (text, cls = "") => { $("status").textContent = text; $("status").className = `status ${cls}`; };

try {
  const info = await api(`/api/sessions/${session}`, { token });
  $("title").textContent = info.title;
  document.title = `${info.title} · 观看`;
  // A member identified on the open link is remembered on this phone for this lecture: a
  // reload, or the link opened again, goes straight to the lecture.
  const remembered = `lr-member:${session}`;
  let forget = null;
  if (info.role === "viewer") {
    const kept = readKept(remembered);
    if (kept) {
      token = kept;
    } else {
      // The open link: identify against the roster, or watch without credit.
      $("identify").hidden = false;
      status("");
      token = await new Promise((resolve) => {
        $("skip").onclick = () => resolve(token);
        $("identify").onsubmit = async (ev) => {
          ev.preventDefault();
          try {
            const r = await api(`/api/sessions/${session}/identify`, {
              token, method: "POST",
              body: { member_id: $("mid").value.trim(), name: $("mname").value.trim() },
            });
            status(`${r.name}，欢迎参加学习`, "ok");
            try { localStorage.setItem(remembered, r.token); } catch (e) { /* private mode */ }
            resolve(r.token);
          } catch (e) {
            status(e.status === 404 ? "党员编号或姓名不正确，请核对" : fmtError(e), "error");
          }
        };
      });
      $("identify").hidden = true;
    }
    if (token !== params().token) {
      forget = () => {
        try { localStorage.removeItem(remembered); } catch (e) { /* private mode */ }
        location.reload();
      };
    }
  }
  if (!info.live) status("讲座尚未开始，开始后将自动播放。");
  mountFeedback($("fbbox"), session, token);
  const role = claims(token).r;
  const mine = role === "member"
    ? mountMine($("minebox"), session, token, { onForget: forget, heartbeatS: info.heartbeat_interval_s })
    : null;
  mountFloor($("floorbox"), session, token, { role, canRaise: role === "member", iceServers: info.ice_servers });
  mountAsk($("qabox"), session, token, { canAsk: role === "member" });
  const player = new Player($("video"), {
    session, token, iceServers: info.ice_servers, heartbeatS: info.heartbeat_interval_s,
    onStatus: status,
    // 点名 reaches an identified member; the open link's anonymous viewer has no record
    onRollCall: role === "member" ? mountRollCall(session, token) : () => {},
    onSoundBlocked: () => ($("sound").hidden = false),
    onEnded: () => {
      // the lecture is over: no more playback controls or raised hands; its feedback form
      document.querySelectorAll(".controls").forEach((e) => (e.hidden = true));
      $("floorbox").hidden = true;
      if (mine) mine.lectureEnded();
      $("feedback")?.setAttribute("open", "");
    },
  });
  window.relayState = player;
  $("unmute").onclick = () => { player.unmute(); $("sound").hidden = true; };
  $("audioonly").onclick = async () => {
    const next = !player.audioOnly;
    try {
      await player.setAudioOnly(next);
      $("audioonly").textContent = next ? "恢复视频" : "仅听声音（省流量）";
    } catch (e) { status(fmtError(e), "error"); }
  };
  await player.start();
} catch (e) {
  status(fmtError(e), "error");
}
