// WHIP/WHEP client for the pages: no library, no CDN.
// Offers are sent after ICE gathering completes (the relay does not take trickle ICE).

export function params() {
  const q = new URLSearchParams(location.search);
  return { session: q.get("session"), token: q.get("token") };
}

export async function api(path, { token, method = "GET", body } = {}) {
  const headers = {};
  if (token) headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw await refusal(resp);
  return resp.json().catch(() => ({}));
}

// The relay's refusal as a RelayError: its JSON reason, else the status text.
async function refusal(resp) {
  const data = await resp.json().catch(() => ({}));
  return new RelayError(resp.status, data.error || resp.statusText);
}

// A file from the API (an export, the personal links) saved under ``filename``; a refusal
// is thrown as a RelayError with the relay's reason, not saved as the file.
export async function download(path, token, filename) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (!resp.ok) throw await refusal(resp);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

export class RelayError extends Error {
  constructor(status, reason) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

function waitGathering(pc, timeoutMs = 2000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitGathering(pc);
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const text = await resp.text();
  if (resp.status !== 201) {
    let reason = text;
    try { reason = JSON.parse(text).error; } catch (e) { /* plain text */ }
    pc.close();
    throw new RelayError(resp.status, reason);
  }
  const location = resp.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  return location;
}

function preferCodec(transceiver, kind, codec) {
  if (!codec || !RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
  const caps = RTCRtpSender.getCapabilities(kind).codecs;
  const want = caps.filter((c) => c.mimeType.toLowerCase() === `${kind}/${codec.toLowerCase()}`
    && (codec.toLowerCase() !== "h264" || /packetization-mode=1/.test(c.sdpFmtpLine || "")
      && /profile-level-id=42(e0|00)1f/.test(c.sdpFmtpLine || "")));
  const rtx = caps.filter((c) => c.mimeType.toLowerCase() === `${kind}/rtx`);
  if (want.length) transceiver.setCodecPreferences([...want, ...rtx]);
}

// A connection's stop(): the DELETE first, sent keepalive so that it outlives a page that is
// going away, then the PeerConnection once the request has gone. Closed first, the DTLS close
// would reach the relay before the DELETE, and the end be recorded as ice_failure.
function ender(pc, location, token) {
  return () => fetch(location, { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${token}` } })
    .catch(() => {})
    .finally(() => pc.close());
}

// Publish a MediaStream over WHIP. Returns { pc, location, stop() }.
export async function publish(session, token, stream, { iceServers = [], videoCodec, maxBitrate = 1500000, feed, scaleDown } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  for (const track of stream.getTracks()) {
    const init = { direction: "sendonly", streams: [stream] };
    if (track.kind === "video") {
      // As the transceiver's initial encoding: setParameters before negotiation has no
      // encodings to change in Chrome, so the bitrate cap and the scale were never applied.
      const encoding = { maxBitrate };
      if (scaleDown) encoding.scaleResolutionDownBy = scaleDown;
      init.sendEncodings = [encoding];
    }
    const t = pc.addTransceiver(track, init);
    if (track.kind === "video") preferCodec(t, "video", videoCodec);
  }
  const location = await exchange(pc, `/whip/${session}${feed ? `?feed=${encodeURIComponent(feed)}` : ""}`, token);
  return {
    pc,
    location,
    stop: ender(pc, location, token),
  };
}

// Watch a session over WHEP. Returns { pc, location, stream, stop(), setAudioOnly(bool) }.
export async function watch(session, token, { iceServers = [], audioOnly = false, feed } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (ev) => stream.addTrack(ev.track));
  const query = feed ? `?feed=${encodeURIComponent(feed)}` : (audioOnly ? "?audio_only=1" : "");
  const location = await exchange(pc, `/whep/${session}${query}`, token);
  return {
    pc,
    location,
    stream,
    stop: ender(pc, location, token),
    async setAudioOnly(value) {
      const resp = await fetch(`${location}/mode`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ audio_only: value }),
      });
      if (!resp.ok) throw new RelayError(resp.status, "mode");
    },
  };
}

// Is media still arriving? Chromium can keep connectionState "connected" after the relay
// closed the viewer (DTLS goes "closed"), so watch the DTLS transport and the byte counters.
export function connectionDead(pc) {
  const states = pc.getReceivers().map((r) => r.transport && r.transport.state).filter(Boolean);
  return ["failed", "closed"].includes(pc.connectionState)
    || pc.iceConnectionState === "failed"
    || states.some((s) => s === "closed" || s === "failed");
}

export async function inboundBytes(pc) {
  let bytes = 0;
  let audioBytes = 0;
  let framesDecoded = 0;
  let audioSamples = 0;
  let audioConcealed = 0;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") {
      bytes += s.bytesReceived || 0;
      if (s.kind === "video") framesDecoded += s.framesDecoded || 0;
      if (s.kind === "audio") {
        audioBytes += s.bytesReceived || 0;
        audioSamples += s.totalSamplesReceived || 0;
        audioConcealed += s.concealedSamples || 0;
      }
    }
  });
  return { bytes, audioBytes, framesDecoded, audioSamples, audioConcealed };
}

export function fmtError(err) {
  const messages = {
    401: "链接无效或已过期，请向组织部索取新链接",
    403: "此链接无权进行该操作",
    404: "未找到该讲座或教室",
    406: "此设备的浏览器无法播放本讲座的视频格式",
    410: "讲座已结束",
  };
  if (err instanceof RelayError) return messages[err.status] || `出错了：${err.reason}`;
  return `出错了：${err && err.message ? err.message : err}`;
}
