"""Live recording of a session: the forwarders' packets, depacketized and remuxed (never
decoded or encoded) into Matroska, which stays readable if the process dies.

It taps the forwarders, so it sees the relay's continuous sequence/timestamp space: a
publisher that reconnects continues the same file. Audio and video are placed on one clock
through the publisher's RTCP sender reports (its NTP clock), or, without them, the arrival
time of each track's first packet.
"""

from __future__ import annotations

import fractions
import struct
import time
from collections.abc import Callable
from pathlib import Path

import av
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload

from media.forwarder import Forwarder
from media.rtp import keyframe_detector

MS = fractions.Fraction(1, 1000)
SYNC_WAIT_S = 3.0  # longest wait for sender reports before falling back to arrival times
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)


def frame_size(codec: str, keyframe: bytes) -> tuple[int, int]:
    """The picture size a container header needs: read from a VP8 key frame's header; for
    H264, by decoding this one key frame (once per recording, never per packet)."""
    if codec == "vp8":
        return vp8_size(keyframe) or (0, 0)
    try:
        decoder = av.CodecContext.create(codec, "r")
        for frame in decoder.decode(av.Packet(keyframe)):
            return frame.width, frame.height
        for frame in decoder.decode(None):
            return frame.width, frame.height
    except av.FFmpegError:
        pass
    return (0, 0)


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 9.1)."""
    if len(frame) >= 10 and frame[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", frame, 6)
        return width & 0x3FFF, height & 0x3FFF
    return None


class _Track:
    """One kind's frames on the way to the file: unwrap, assemble, gate on keyframes."""

    def __init__(self, kind: str, codec: str, clock_rate: int) -> None:
        self.kind = kind
        self.codec = codec
        self.clock_rate = clock_rate
        self.is_keyframe = keyframe_detector(f"video/{codec}") if kind == "video" else None
        self.depayload = {"vp8": vp8_depayload, "h264": h264_depayload}.get(codec)
        self.ext_ts: int | None = None
        self.last_rts = 0
        self.first_ext: int | None = None
        self.first_at = 0.0  # monotonic arrival of the first packet
        self.origin_s: float | None = None  # this track's first frame on the common clock
        # frame being assembled
        self.cur_ts: int | None = None
        self.parts: list[bytes] = []
        self.cur_key = False
        self.broken = False
        self.next_seq: int | None = None
        self.need_key = kind == "video"
        self.dropped = 0
        self.frames = 0

    def unwrap(self, rts: int) -> int:
        if self.ext_ts is None:
            self.ext_ts = rts
        else:
            self.ext_ts += ((rts - self.last_rts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        self.last_rts = rts
        return self.ext_ts

    def add(self, rseq: int, ext: int, marker: int, payload: bytes):
        """Returns a completed frame (ext_ts, data, keyframe) or None."""
        if self.kind == "audio":
            return (ext, payload, True)
        out = None
        if self.cur_ts is not None and ext != self.cur_ts:
            out = self._finish()
        if self.next_seq is not None and rseq != self.next_seq:
            self.broken = True  # a packet is missing: this frame cannot be decoded
        self.next_seq = (rseq + 1) & 0xFFFF
        if self.cur_ts is None:
            self.cur_ts = ext
            self.cur_key = bool(self.is_keyframe and self.is_keyframe(payload))
        try:
            self.parts.append(self.depayload(payload))
        except ValueError:
            self.broken = True
        if marker:
            done = self._finish()
            out = out or done
        return out

    def _finish(self):
        ts, data, key, broken = self.cur_ts, b"".join(self.parts), self.cur_key, self.broken
        self.cur_ts, self.parts, self.cur_key, self.broken = None, [], False, False
        if broken or not data:
            self.need_key = True
            self.dropped += 1
            return None
        if self.need_key and not key:
            self.dropped += 1
            return None
        self.need_key = False
        return (ts, data, key)


class SessionRecorder:
    """Records one session's forwarders into ``path`` (Matroska)."""

    def __init__(
        self,
        path: Path,
        audio: Forwarder,
        video: Forwarder,
        video_codec: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._audio_fwd = audio
        self._video_fwd = video
        self._clock = clock
        self.video_codec = video_codec
        self.tracks = {
            "audio": _Track("audio", "opus", 48000),
            "video": _Track("video", video_codec.lower(), 90000),
        }
        self._pending: list[tuple[str, int, int, bytes, bool]] = []
        self._started_at: float | None = None
        self._container = None
        self._streams: dict[str, object] = {}
        self._taps: dict[str, Callable] = {}
        self.packets = 0
        self.bytes = 0
        self.cpu_s = 0.0
        self.closed = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for kind, fwd in (("audio", self._audio_fwd), ("video", self._video_fwd)):
            tap = self._make_tap(kind)
            self._taps[kind] = tap
            fwd.taps.append(tap)
        self._video_fwd.keyframes.request()

    def _make_tap(self, kind: str) -> Callable[[int, int, int, bytes], None]:
        track = self.tracks[kind]

        def tap(rseq: int, rts: int, marker: int, payload: bytes) -> None:
            t0 = time.process_time()
            if track.first_ext is None:
                track.first_at = self._clock()
            ext = track.unwrap(rts)
            if track.first_ext is None:
                track.first_ext = ext
            frame = track.add(rseq, ext, marker, payload)
            if frame is not None:
                self._frame(kind, frame)
            self.packets += 1
            self.cpu_s += time.process_time() - t0

        return tap

    # -- clock -----------------------------------------------------------------------------
    def _frame(self, kind: str, frame: tuple[int, bytes, bool]) -> None:
        if self._container is None:
            self._pending.append((kind, *frame))
            if self._started_at is None:
                self._started_at = self._clock()
            if self._ready():
                self._open()
                pending, self._pending = self._pending, []
                for k, ts, data, key in pending:
                    self._write(k, ts, data, key)
            return
        self._write(kind, *frame)

    def _ready(self) -> bool:
        """Open the file once video has a keyframe and every track has a sender report, or
        after SYNC_WAIT_S whatever has arrived (an audio-only lecture, a publisher without
        SRs)."""
        if self._clock() - (self._started_at or 0) >= SYNC_WAIT_S:
            return True
        if not any(k == "video" for k, *_ in self._pending):
            return False
        return all(self._anchor(k) is not None for k in self._kinds_seen())

    def _anchor(self, kind: str):
        fwd = self._audio_fwd if kind == "audio" else self._video_fwd
        return fwd.sr_ntp

    def _open(self) -> None:
        """Fix each track's start on a common clock, then open the file."""
        origins: dict[str, float] = {}
        for kind, track in self.tracks.items():
            if track.first_ext is None:
                continue
            anchor = self._anchor(kind)
            if anchor is not None and all(self._anchor(k) for k in self._kinds_seen()):
                rts, ntp_s = anchor
                delta = ((track.first_ext - rts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                origins[kind] = ntp_s + delta / track.clock_rate
            else:
                origins[kind] = track.first_at
        zero = min(origins.values())
        for kind, start in origins.items():
            self.tracks[kind].origin_s = start - zero
        fmt = "webm" if self.tracks["video"].codec == "vp8" else "matroska"
        self._container = av.open(str(self.path), "w", format=fmt)
        for kind, track in self.tracks.items():
            if track.first_ext is None:
                continue
            if kind == "audio":
                stream = self._container.add_mux_stream("opus", rate=48000)
                stream.extradata = OPUS_HEAD
            else:
                first_key = next((d for k, _, d, key in self._pending if k == "video" and key), b"")
                w, h = frame_size(track.codec, first_key)
                stream = self._container.add_mux_stream(track.codec, width=w, height=h)
            self._streams[kind] = stream

    def _kinds_seen(self) -> list[str]:
        return [k for k, t in self.tracks.items() if t.first_ext is not None]

    def _write(self, kind: str, ts: int, data: bytes, key: bool) -> None:
        stream = self._streams.get(kind)
        track = self.tracks[kind]
        if stream is None or track.origin_s is None:
            return
        seconds = track.origin_s + (ts - track.first_ext) / track.clock_rate
        packet = av.Packet(data)
        packet.pts = packet.dts = round(seconds * 1000)
        packet.time_base = MS
        packet.stream = stream
        packet.is_keyframe = key
        try:
            self._container.mux(packet)
        except (av.FFmpegError, ValueError):
            track.dropped += 1  # e.g. a timestamp that went backwards
            return
        track.frames += 1
        self.bytes += len(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for kind, fwd in (("audio", self._audio_fwd), ("video", self._video_fwd)):
            tap = self._taps.get(kind)
            if tap in fwd.taps:
                fwd.taps.remove(tap)
        if self._container is None and self._pending:
            self._open()
            pending, self._pending = self._pending, []
            for k, ts, data, key in pending:
                self._write(k, ts, data, key)
        if self._container is not None:
            self._container.close()
