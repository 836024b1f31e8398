// A member's own record of this lecture (我的本场学习) on the watch page: the time the relay
// has counted so far (from the media it saw reach this phone, not from the page's word), and
// once the lecture has ended whether it counts toward the member's training hours.
import { api } from "/static/js/relay.js";

const minutes = (s) => (s < 60 ? `${Math.round(s)} 秒` : `${Math.floor(s / 60)} 分钟`);

// Asked every ~2 minutes (jittered: thousands of phones watch one lecture), and at once
// when the lecture ends or the page comes back to the front. While nothing is counted yet
// (a phone that has just joined), asked again after 3-6 heartbeats' time instead: the
// member sees the count start within a minute, not two.
const EVERY_MS = 120000;

export function mountMine(container, session, token, { onForget = null, heartbeatS = 10 } = {}) {
  container.hidden = false;
  container.innerHTML = `<div class="card" id="mine">
    <div><b id="minewho">我的本场学习</b></div>
    <div id="minetime" class="status">正在读取学习记录……</div>
    <div id="minecalls" class="status" hidden></div>
    <div id="minehint" class="hint"></div>
    <div class="row" id="minelinks"><a id="minehours" href="/me?token=${encodeURIComponent(token)}">我的学时与回放</a></div>
  </div>`;
  const $ = (id) => container.querySelector(`#${id}`);
  if (onForget) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = "forget";
    b.textContent = "不是本人？重新登记";
    b.onclick = onForget;
    $("minelinks").appendChild(b);
  }
  let timer = null;
  let ended = false;
  let ending = 0; // told the lecture ended: asked a few times more, soon, until it says so
  let nothingYet = true; // no time counted so far

  const render = (me) => {
    const t = me.lecture;
    $("minewho").textContent = me.name ? `${me.name}（${me.member_id}）· 我的本场学习` : `党员编号 ${me.member_id} · 我的本场学习`;
    const counted = t.replay_credit ? me.total_seconds : me.seconds_watched;
    nothingYet = !(counted > 0);
    const replay = t.replay_credit && me.replay_seconds > 0 ? `（含回放 ${minutes(me.replay_seconds)}）` : "";
    const pct = Math.round(t.threshold * 100);
    // 点名: the member's own answers, as the relay counted them (in time, while watching)
    if (t.rollcalls_held) {
      $("minecalls").hidden = false;
      $("minecalls").textContent = `点名：已应答 ${(me.rollcalls || []).length}/${t.rollcalls_held} 次`
        + (t.rollcalls_required ? `（须应答 ${t.rollcalls_required} 次方计入学时）` : "");
    }
    const line = $("minetime");
    if (!t.ended) {
      line.textContent = t.started ? `本场已计学习时长：${minutes(counted)}${replay}` : "讲座尚未开始";
      line.className = "status";
      $("minehint").textContent = `讲座结束后，观看满讲座时长的 ${pct}% 计入学时。时长以本机实际收到并播放的直播为准，关闭页面或断网期间不计时。`;
      return;
    }
    ended = true;
    const length = `讲座时长 ${minutes(t.seconds)}`;
    if (me.credited) {
      line.textContent = `本场学习 ${minutes(counted)}${replay}，已达到${length}的 ${pct}%，计入学时`;
      line.className = "status ok";
      $("minehint").textContent = "";
    } else {
      line.textContent = `本场学习 ${minutes(counted)}${replay}，未达到${length}的 ${pct}%（需 ${minutes(t.required_seconds)}）`;
      line.className = "status warn";
      $("minehint").textContent = t.replay_credit ? "回放生成后，可在“我的学时与回放”中观看回放补足学时。" : "本讲座的回放不计入学时。";
    }
  };

  const refresh = async () => {
    clearTimeout(timer);
    try {
      render(await api(`/api/sessions/${session}/me`, { token }));
    } catch (e) { /* the next one will do */ }
    if (ended) return;
    const wait = ending-- > 0 ? 3000 + Math.random() * 2000
      : nothingYet ? heartbeatS * 1000 * (3 + 3 * Math.random())
      : EVERY_MS * (0.75 + Math.random() / 2);
    timer = setTimeout(refresh, wait);
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !ended) refresh();
  });
  refresh();
  return {
    refresh,
    // Every phone of the lecture hears of its end within seconds: spread over 10 s.
    lectureEnded() {
      ending = 5;
      clearTimeout(timer);
      timer = setTimeout(refresh, Math.random() * 10000);
    },
  };
}
