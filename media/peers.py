"""A publisher (WHIP) and a viewer (WHEP) connection: aiortc peers wired to forwarders."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.clock import current_ntp_time
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError

from media.codecs import capabilities
from media.fastpath import IngestTap, SendPath, ViewerFeedback, send_pli, take_over_sender
from media.forwarder import Downtrack, Forwarder
from media.layers import AUDIO, HIGH, LOW, LayerChooser, LayerPolicy, LossReading, LossWindow
from media.logtag import log_tag
from media.rtcp import sdes_cname, sender_report

log = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


class PeerRefused(ValueError):
    """aiortc could not negotiate the offer (no common codec, bad direction...)."""


# aiortc's errors about the offer, whose text says what is wrong with it; others (an
# AttributeError deep inside aiortc) say nothing useful to the client.
_SAYS_WHY = (ValueError, InvalidAccessError, InvalidStateError, OperationError)


class _Peer:
    def __init__(self, config: RTCConfiguration, on_gone: Callable[[_Peer], None]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.pc = RTCPeerConnection(configuration=config)
        self.path: SendPath | None = None
        self.connected = asyncio.Event()
        self.gone = asyncio.Event()  # set once closed, for whoever waits on the connection
        self.closed = False
        self.close_reason = ""
        self.connected_hook: asyncio.Future | None = None  # owned by SessionMedia
        self._on_gone = on_gone
        self.pc.on("connectionstatechange", self._state_changed)

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.path is None:
            try:
                self.path = SendPath(self._dtls())
            except ConnectionError:
                log.warning("peer %s connected without a nominated pair", log_tag(self.id))
                return
            self._on_connected()
            self.connected.set()
        elif state in ("failed", "closed"):
            await self.close("ice_failure")

    def _add_transceivers(
        self, kinds: tuple[str, ...], direction: str, video_codec: str, video_rtx: bool
    ) -> None:
        """One transceiver per kind the offer has, in the offer's order, codec preset."""
        for kind in kinds:
            t = self.pc.addTransceiver(kind, direction=direction)
            if kind == "audio":
                t.setCodecPreferences(capabilities("audio", "opus", with_rtx=False))
            else:
                t.setCodecPreferences(capabilities("video", video_codec, with_rtx=video_rtx))

    def _dtls(self):
        return self.pc.getTransceivers()[0].receiver.transport

    def _on_connected(self) -> None: ...

    async def _negotiate(self, offer_sdp: str, before_answer: Callable[[], None]) -> str:
        """The answer SDP; PeerRefused, with the peer connection closed, when aiortc fails at
        any step: an offer setRemoteDescription takes can still break createAnswer."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            before_answer()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return self.pc.localDescription.sdp
        except Exception as exc:  # aiortc: OperationError, ValueError, AttributeError...
            await self._refused()
            reason = str(exc) if isinstance(exc, _SAYS_WHY) else "aiortc could not answer it"
            raise PeerRefused(f"the offer cannot be answered: {reason}") from None

    async def _refused(self) -> None:
        """Close a connection that never got an answer (nobody was told of it: no on_gone)."""
        self.closed = True
        self.close_reason = "refused"
        try:
            await self.pc.close()
        except Exception:  # noqa: BLE001 - half negotiated; what aiortc made is closed as it can
            log.debug("peer %s: closing after a refused offer failed", self.id, exc_info=True)

    async def close(self, reason: str = "delete") -> None:
        """End the connection; ``reason`` says why (it goes into the attendance record)."""
        if self.closed:
            return
        self.closed = True
        self.gone.set()
        self.close_reason = reason
        if self.path is not None:
            self.path.close()
        self._on_gone(self)
        await self.pc.close()


class Publisher(_Peer):
    """The lecturer's connection: receives audio + video and feeds the forwarders."""

    def __init__(
        self,
        config: RTCConfiguration,
        audio: Forwarder,
        video: Forwarder,
        video_codec: str,
        on_gone: Callable[[_Peer], None],
        kinds: tuple[str, ...] = ("audio", "video"),
    ) -> None:
        super().__init__(config, on_gone)
        self.audio = audio
        self.video = video
        self.video_codec = video_codec
        self._video_receiver = None
        self._add_transceivers(kinds, "recvonly", video_codec, video_rtx=True)

    async def answer(self, offer_sdp: str, ssrc_groups: list[tuple[int, int]]) -> str:
        tap = IngestTap(self.pc)
        for rtx_ssrc, media_ssrc in ssrc_groups:
            tap.map_rtx_ssrc(rtx_ssrc, media_ssrc)

        def wire() -> None:
            for t in self.pc.getTransceivers():
                if t.mid is None or not t._codecs:
                    continue
                fwd = self.audio if t.kind == "audio" else self.video
                main = t._codecs[0]
                rtx = next(
                    (
                        c.payloadType
                        for c in t._codecs
                        if c.mimeType.lower().endswith("/rtx")
                        and c.parameters.get("apt") == main.payloadType
                    ),
                    None,
                )
                tap.route(main.payloadType, fwd.push, rtx)
                tap.on_sender_report(t.receiver, fwd.note_sender_report)
                if t.kind == "video":
                    self._video_receiver = t.receiver
            tap.install()

        return await self._negotiate(offer_sdp, wire)

    def _on_connected(self) -> None:
        receiver, path, video = self._video_receiver, self.path, self.video
        if receiver is not None:
            video.keyframes.set_sender(lambda: send_pli(receiver, path, video.mapper.ssrc or 0))
            video.keyframes.request()


class _TrackFeedback(ViewerFeedback):
    def __init__(self, forwarder: Forwarder, dt: Downtrack) -> None:
        self.forwarder = forwarder
        self.dt = dt
        self.remb: int | None = None

    def on_receiver_report(self, report) -> None:
        now = asyncio.get_running_loop().time()
        dt = self.dt
        dt.rr = (
            report.highest_sequence,
            report.fraction_lost,
            report.packets_lost,
            report.jitter,
            now,
        )
        if report.lsr and report.lsr == dt.sr_lsr:
            dt.rtt = max(now - dt.sr_at - report.dlsr / 65536, 0.0)

    def on_nack(self, lost: list[int]) -> None:
        self.forwarder.retransmit(self.dt, lost)

    def on_keyframe_request(self) -> None:
        self.forwarder.keyframes.request()

    def on_remb(self, bitrate: int) -> None:
        self.remb = bitrate


class Viewer(_Peer):
    """One viewer's connection: send-only audio + video, fed by the forwarders."""

    def __init__(
        self,
        config: RTCConfiguration,
        audio: Forwarder,
        video: Forwarder,
        video_codec: str,
        on_gone: Callable[[_Peer], None],
        audio_only: bool = False,
        kinds: tuple[str, ...] = ("audio", "video"),
        layer_policy: LayerPolicy | None = None,
    ) -> None:
        super().__init__(config, on_gone)
        self.forwarders = {"audio": audio, "video": video}
        self.audio_only = audio_only
        self.tracks: dict[str, tuple[Forwarder, Downtrack]] = {}
        self.feedback: dict[str, _TrackFeedback] = {}
        self.layers = LayerChooser(layer_policy or LayerPolicy())
        # Per track: its loss window, the arrival time of the last report fed to it, and its
        # newest reading (what the quality list shows).
        self._windows: dict[str, LossWindow] = {}
        self._fed_rr: dict[str, float] = {}
        self.readings: dict[str, LossReading] = {}
        self.cname = self.pc._RTCPeerConnection__cname  # the cname aiortc puts in the SDP
        self._add_transceivers(kinds, "sendonly", video_codec, video_rtx=False)

    async def answer(self, offer_sdp: str) -> str:
        def wire() -> None:
            for t in self.pc.getTransceivers():
                if t.mid is None or not t._codecs:
                    continue
                mid_id = next((e.id for e in t._headerExtensions if e.uri == MID_URI), None)
                ext = [(mid_id, t.mid.encode())] if mid_id else None
                dt = Downtrack(t.sender._ssrc, t._codecs[0].payloadType, ext)
                fwd = self.forwarders[t.kind]
                self.tracks[t.kind] = (fwd, dt)
                self._windows[t.kind] = LossWindow(self.layers.policy.window_packets)
                self.feedback[t.kind] = _TrackFeedback(fwd, dt)
                take_over_sender(t.sender, self.feedback[t.kind])

        return await self._negotiate(offer_sdp, wire)

    def _on_connected(self) -> None:
        path = self.path
        for kind, (fwd, dt) in self.tracks.items():
            dt.bind(path.protect, path.sendto, path.addr, path.srtp, path.fd)
            fwd.add(dt)
            if kind == "video" and self.audio_only:
                fwd.pause(dt)

    async def choose_audio_only(self, audio_only: bool) -> None:
        """The viewer's own choice (the same call as a worker's viewer's stand-in has)."""
        self.set_audio_only(audio_only)

    def set_audio_only(self, audio_only: bool) -> None:
        """The viewer's own choice; without it, video follows the layer the relay chose."""
        self.audio_only = audio_only
        if "video" in self.tracks and self.path is not None:
            fwd, dt = self.tracks["video"]
            if audio_only or self.layers.layer == AUDIO:
                fwd.pause(dt)
            else:
                fwd.resume(dt)

    def choose_layer(self, now: float, low: Forwarder | None) -> str | None:
        """Once a second: step the video layer when the track that is flowing (video, or audio
        while on sound only) completed a loss window; returns the layer when it changed."""
        if "video" not in self.tracks or self.path is None:
            return None
        readings = self._read_windows()
        changed = self.layers.fallback(low is not None)
        if changed is None:
            kind = "audio" if self.layers.layer == AUDIO and "audio" in self.tracks else "video"
            reading = readings.get(kind)
            if reading is not None:
                changed = self.layers.judge(reading, now, low is not None)
            else:
                changed = self.layers.tick(now, low is not None)
        if changed is not None:
            self.set_layer(changed, low)
            for window in self._windows.values():  # the new layer is judged on its own
                window.restart()
        return changed

    def _read_windows(self) -> dict[str, LossReading]:
        """Feed each track's newest receiver report (once) to its window; the readings of
        the windows it completed."""
        done: dict[str, LossReading] = {}
        for kind, (_, dt) in self.tracks.items():
            rr = dt.rr
            if rr is None or self._fed_rr.get(kind) == rr[4]:
                continue
            self._fed_rr[kind] = rr[4]
            reading = self._windows[kind].add(rr[0], rr[2], dt.packets, dt.nacked)
            if reading is not None:
                done[kind] = self.readings[kind] = reading
        return done

    def set_layer(self, layer: str, low: Forwarder | None) -> None:
        """Send this viewer the full lecture, the low copy (``low``) or no video."""
        fwd, dt = self.tracks["video"]
        target = {HIGH: self.forwarders["video"], LOW: low}.get(layer)
        if target is None:  # sound only
            fwd.pause(dt)
            return
        if target is not fwd:
            fwd.hand_over(dt, target)
            if self.audio_only:
                target.pause(dt)
        elif not self.audio_only:
            fwd.resume(dt)
        self.tracks["video"] = (target, dt)
        self.feedback["video"].forwarder = target

    def quality(self) -> dict:
        """Loss, jitter and round trip of this viewer, per track, from its receiver reports:
        the loss of its newest loss window (the newest report's fraction before one)."""
        out: dict = {"audio_only": self.audio_only, "layer": self.layers.layer}
        for kind, (fwd, dt) in self.tracks.items():
            if dt.rr is None:
                out[kind] = None
                continue
            _, fraction, lost, jitter, _ = dt.rr
            reading = self.readings.get(kind)
            out[kind] = {
                "loss": round(fraction / 256 if reading is None else reading.lost, 4),
                "lost": lost,
                "jitter_ms": round(jitter / fwd.mapper.clock_rate * 1000, 1),
                "rtt_ms": None if dt.rtt is None else round(dt.rtt * 1000, 1),
            }
        return out

    def receiver_highest(self) -> dict[str, int]:
        """Per track, the highest sequence number the viewer's receiver reports say arrived."""
        return {kind: dt.rr[0] for kind, (_, dt) in self.tracks.items() if dt.rr is not None}

    def detach(self) -> None:
        for fwd, dt in self.tracks.values():
            fwd.remove(dt)

    def send_reports(self) -> None:
        """RTCP sender report + SDES per track, so the viewer can sync audio and video."""
        path = self.path
        if path is None or self.closed:
            return
        if path.moved():  # checked once a second: a phone's new address gets media from now
            path.close()
            path = self.path = SendPath(self._dtls())
            for fwd, dt in self.tracks.values():
                dt.bind(path.protect, path.sendto, path.addr, path.srtp, path.fd)
                fwd.regroup()  # the new pair may be relayed: the Python loop sends it then
        ntp = current_ntp_time()
        cname = self.cname.encode()
        for fwd, dt in self.tracks.values():
            if dt.packets == 0:
                continue
            now_ts = fwd.rtp_timestamp_now() + dt.ts_off
            report = sender_report(dt.ssrc, ntp, now_ts, dt.packets, dt.octets)
            dt.sr_lsr = (ntp >> 16) & 0xFFFFFFFF
            dt.sr_at = asyncio.get_running_loop().time()
            try:
                path.send_rtcp(report + sdes_cname(dt.ssrc, cname))
            except Exception:  # noqa: BLE001 - a dead viewer is reaped by its state change
                dt._errors += 1
