// A viewer that stays joined: plays the lecture, re-joins after a network change or a dead
// connection, and handles autoplay rules (sound needs a tap on most phones).
import { api, watch, connectionDead, inboundBytes, fmtError, RelayError } from "/static/js/relay.js";

export class Player {
  constructor(video, { session, token, iceServers = [], heartbeatS = 10, onStatus = () => {}, onSoundBlocked = () => {}, onEnded = () => {}, onRollCall = () => {} }) {
    Object.assign(this, { video, session, token, iceServers, heartbeatS, onStatus, onSoundBlocked, onEnded, onRollCall });
    this.view = null;
    this.audioOnly = false;
    this.layer = "high";
    this.rejoins = 0;
    this.running = false;
    this._lastBytes = 0;
    this._lastChange = 0;
    this._timer = null;
  }

  async start() {
    this.running = true;
    window.addEventListener("online", () => this.check(true));
    if (navigator.connection) navigator.connection.addEventListener("change", () => this.check(true));
    // The page going away (closed, reloaded, navigated from) ends its connection at once:
    // without a word the relay would go on sending to it until ICE consent lapsed, ~30 s
    // later, and record that as an ICE failure.
    window.addEventListener("pagehide", () => this.leave());
    window.addEventListener("pageshow", (e) => {
      if (e.persisted && this.running && !this.view) this.join(); // back from the page cache
    });
    // Checks run from the start, not from the first picture: a member who opens the page
    // before the lecture begins waits on a connection that may drop meanwhile.
    this._timer = setInterval(() => this.check(false), 1000);
    this._beat = setInterval(() => this.heartbeat(), this.heartbeatS * 1000);
    await this.join();
  }

  // Attendance: what this page can say about playback, every 10 s. The relay adds its own
  // evidence (the receiver reports of this connection) before it records anything.
  async heartbeat() {
    const view = this.view;
    if (!view) return;
    try {
      const { bytes, audioBytes, framesDecoded, measured } = await this.measure(view);
      if (!bytes) return; // nothing has played yet (the lecture has not begun): nothing to say
      const audioPlaying = !this.video.paused && audioBytes > (this._lastAudio || 0);
      this._lastAudio = audioBytes;
      const beat = JSON.stringify({
        frames_decoded: framesDecoded,
        audio_playing: audioPlaying,
        visible: document.visibilityState === "visible",
        played_ms: Math.round(measured.played),
      });
      // The connection's WebSocket when it is open (cheaper for the relay), else one POST.
      const ws = this._beats;
      if (ws && ws.view === view && ws.readyState === WebSocket.OPEN && !ws.unanswered) {
        ws.unanswered = true; // a socket that stops answering (a weak link) is replaced
        ws.send(beat);
        ws.sentPlayed = measured.played; // taken off once answered: a dead socket loses none
        return;
      }
      if (ws && ws.unanswered) { ws.close(); this._beats = null; }
      this.openBeats(view);
      const sent = measured.played;
      const res = await fetch(`${view.location}/heartbeat`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` },
        body: beat,
      });
      if (res.ok) {
        this.beatAnswered(view, sent);
        const answer = await res.json();
        this.showLayer(answer.layer);
        if (answer.rollcall) this.onRollCall(answer.rollcall, this.resource(view));
      }
    } catch (e) { /* the next one will do */ }
  }

  // What this connection played since its last heartbeat, added up at each check (every
  // second) and heartbeat: the time since the previous one counts when the picture advanced
  // or the sound was at least half real, not concealed. The relay credits no more of a
  // heartbeat's span than this (a stall, a hand-over), nor more than its own evidence.
  async measure(view) {
    const got = await inboundBytes(view.pc);
    const now = Date.now();
    const m = view.measured || (view.measured = { at: now, frames: 0, samples: 0, concealed: 0, played: 0 });
    const samples = got.audioSamples - m.samples;
    const heard = samples > 0 && samples - (got.audioConcealed - m.concealed) >= samples / 2;
    if (got.framesDecoded > m.frames || heard) m.played += now - m.at;
    Object.assign(m, { at: now, frames: got.framesDecoded, samples: got.audioSamples, concealed: got.audioConcealed });
    return { ...got, measured: m };
  }

  // The relay has a heartbeat that said `sent` ms played: that much is taken off, and what
  // the checks added while it was on its way stays for the next one.
  beatAnswered(view, sent) {
    this.lastBeatAt = Date.now();
    if (view.measured) view.measured.played = Math.max(0, view.measured.played - sent);
  }

  // One WebSocket per connection for its heartbeats, opened once media arrives; the token
  // goes in the first message (never in a URL, which logs would keep). Answers carry the
  // relay's chosen layer, and the relay says so on it when it changes the layer.
  openBeats(view) {
    const old = this._beats;
    if (old && old.view === view && old.readyState <= WebSocket.OPEN) return;
    if (old) old.close();
    if (typeof WebSocket === "undefined" || this._noBeatsFor === view) return;
    const url = new URL(`${view.location}/heartbeats`, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.view = view;
    ws.onopen = () => ws.send(JSON.stringify({ token: this.token }));
    ws.onmessage = (m) => {
      try {
        const answer = JSON.parse(m.data);
        // an answer to a heartbeat, or {"layer"} alone: the relay changed it just now
        if (answer.seq !== undefined || answer.status) ws.unanswered = false;
        if (answer.seq !== undefined) {
          this.beatAnswered(view, ws.sentPlayed || 0);
          ws.sentPlayed = 0;
        }
        if (answer.layer) this.showLayer(answer.layer);
        // a roll call (点名): pushed when it opens, repeated in answers until answered
        if (answer.rollcall) this.onRollCall(answer.rollcall, this.resource(view));
        if ([401, 403, 404].includes(answer.status)) this._noBeatsFor = view; // POSTs it is
      } catch (e) { /* ignore */ }
    };
    this._beats = ws;
  }

  // The connection's WHEP resource id: a roll call is answered on it.
  resource(view) { return view && view.location ? view.location.split("/").pop() : null; }

  // The relay moves a viewer on a weak network to the lecturer's low copy, then to sound
  // only, and back up when the network recovers; say so, so nobody thinks it is broken.
  showLayer(layer) {
    if (!layer || layer === this.layer) return;
    this.layer = layer;
    if (this.audioOnly) return; // the member's own choice is already on screen
    const text = {
      high: ["正在观看", "ok"],
      low: ["网络较弱，已自动切换为低清画面", "warn"],
      audio: ["网络较弱，暂时只播放声音，网络好转后自动恢复画面", "warn"],
    }[layer];
    if (text) this.onStatus(...text);
  }

  async join() {
    let delay = 1000;
    while (this.running) {
      try {
        this.onStatus("正在连接……");
        const view = await watch(this.session, this.token, { iceServers: this.iceServers, audioOnly: this.audioOnly });
        if (this.view) this.view.stop(); // the connection this one replaces
        this.view = view;
        this._lastBytes = 0;
        this._lastChange = Date.now();
        this.video.srcObject = view.stream;
        // Playback starts when the first media arrives, which before the lecture begins, or
        // while the lecturer has paused, is not soon: the join is done, the status says so.
        this.onStatus("已连接，主讲人开始直播后将自动播放");
        this.play().then(() => {
          if (this.view === view) this.showPlaying();
        });
        return;
      } catch (e) {
        if (e instanceof RelayError && e.status === 410) {
          this.stop();
          this.onStatus("讲座已结束，感谢您的参与", "ok");
          this.onEnded();
          return;
        }
        this.onStatus(fmtError(e), "error");
        if (e instanceof RelayError && [401, 403, 404, 406].includes(e.status)) {
          this.running = false;
          return;
        }
        // jittered (0.5-1.5x): after a relay restart thousands of phones retry, and
        // without it they would all come back in the same instant, again and again
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
        delay = Math.min(delay * 2, 10000);
      }
    }
  }

  async play() {
    this.video.muted = false;
    try {
      await this.video.play();
    } catch (e) {
      if (e.name !== "NotAllowedError") return; // e.g. AbortError: a newer load took over
      // Autoplay with sound refused: play muted and ask for a tap.
      this.video.muted = true;
      await this.video.play().catch(() => {});
      this.onSoundBlocked();
    }
  }

  unmute() {
    this.video.muted = false;
    this.video.play().catch(() => {});
  }

  async check(networkChanged) {
    if (!this.running || !this.view || this._checking) return;
    this._checking = true;
    try {
      const pc = this.view.pc;
      const { bytes } = await this.measure(this.view);
      if (bytes > this._lastBytes) {
        if (!this._lastBytes) this.openBeats(this.view); // to hear of layer changes now
        this._lastBytes = bytes;
        this._lastChange = Date.now();
        if (this._pausedAt) {
          this._pausedAt = 0;
          this.showPlaying();
        }
      }
      // Stalled: media had been arriving on this connection and stopped for 8 s. One that
      // has had none yet (the lecture not begun, or paused) is left to its ICE/DTLS state.
      const stalled = this._lastBytes > 0 && Date.now() - this._lastChange > 8000;
      if (networkChanged || connectionDead(pc) || (stalled && !(await this.lecturePaused()))) {
        this.rejoins += 1;
        this.onStatus("网络变化，正在重新连接……", "error");
        await this.join();
      }
    } finally {
      this._checking = false;
    }
  }

  // Media stopped on a connection that is up: this phone's weak link, or the lecturer paused.
  // The relay is asked (again every 30 s while it lasts): a pause would otherwise send every
  // phone to join again at once, only to wait there all the same, and say the network failed.
  async lecturePaused() {
    if (this._pausedAt && Date.now() - this._pausedAt < 30000) return true;
    this._pausedAt = 0;
    try {
      const info = await api(`/api/sessions/${this.session}`, { token: this.token });
      if (info.flowing !== false) return false;
    } catch (e) {
      return false;
    }
    this._pausedAt = Date.now();
    this.onStatus("主讲人已暂停直播，恢复后将自动继续播放", "warn");
    return true;
  }

  async setAudioOnly(value) {
    this.audioOnly = value;
    if (this.view) await this.view.setAudioOnly(value);
    this.showPlaying();
  }

  showPlaying() {
    this.onStatus(this.audioOnly ? "正在收听（仅声音）" : "正在观看", "ok");
  }

  // Ends the connection at the relay now (view.stop: a DELETE that outlives the page), its
  // answer not waited for.
  leave() {
    if (this._beats) { this._beats.close(); this._beats = null; }
    if (this.view) this.view.stop();
    this.view = null;
  }

  stop() {
    this.running = false;
    clearInterval(this._timer);
    clearInterval(this._beat);
    this.leave();
  }
}
