import { params, api, fmtError } from "/static/js/relay.js";

const { session, token } = params();
const $ = (id) => document.getElementById(id);
const video = $("video");
const status = (text, cls = "") => { $("status").textContent = text; $("status").className = `status ${cls}`; };
const view = Math.random().toString(36).slice(2, 12);
const resumeKey = `replay:${session}`;
const fmt = (s) => `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
window.relayReplay = { video, reports: 0 };

async function report() {
  if (!video.src) return;
  try {
    await fetch(`/api/sessions/${session}/replay/progress`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({
        position: video.currentTime, playing: !video.paused && !video.ended,
        visible: document.visibilityState === "visible", view,
      }),
    });
    window.relayReplay.reports += 1;
  } catch (e) { /* the next one will do */ }
}

try {
  const info = await api(`/api/sessions/${session}`, { token });
  $("title").textContent = `回放：${info.title}`;
  const job = await api(`/api/sessions/${session}/replay`, { token });
  if (job.state !== "done") {
    status(job.state === "failed" ? "回放文件生成失败，请联系管理员" : "回放文件正在生成，请稍后再来", job.state === "failed" ? "error" : "");
  } else {
    const q = `token=${encodeURIComponent(token)}`;
    video.poster = `/replays/${session}.jpg?${q}`;
    video.src = `/replays/${session}.mp4?${q}`;
    video.addEventListener("loadedmetadata", () => {
      const saved = parseFloat(localStorage.getItem(resumeKey) || "0");
      if (saved > 5 && saved < video.duration - 5) {
        video.currentTime = saved;
        status(`从上次看到的 ${fmt(saved)} 继续`, "ok");
      } else status("点击播放开始回放", "ok");
      $("time").textContent = `${fmt(video.currentTime)} / ${fmt(video.duration)}`;
    });
    video.addEventListener("timeupdate", () => {
      $("time").textContent = `${fmt(video.currentTime)} / ${fmt(video.duration || 0)}`;
      localStorage.setItem(resumeKey, String(video.currentTime));
    });
    video.addEventListener("play", () => { $("play").textContent = "❚❚ 暂停"; report(); });
    video.addEventListener("pause", () => { $("play").textContent = "▶ 播放"; report(); });
    $("play").onclick = () => (video.paused ? video.play() : video.pause());
    $("back").onclick = () => { video.currentTime = Math.max(0, video.currentTime - 10); };
    $("fwd").onclick = () => { video.currentTime = Math.min(video.duration || 0, video.currentTime + 10); };
    setInterval(report, (info.heartbeat_interval_s || 10) * 1000);
  }
} catch (e) {
  status(fmtError(e), "error");
}
