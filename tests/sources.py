"""Synthetic media for tests and benchmarks: a moving test pattern and a tone; and the
malformed RTCP a hostile viewer sends (tests/test_hostile.py, bench_fanout.py --hostile).

Frames are built from a handful of precomputed planes so the source itself costs little.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import random
import struct
import time

import av
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtp import pack_remb_fci

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


class PatternVideoTrack(VideoStreamTrack):
    """A yuv420p test pattern: a bright bar moving over a grey field."""

    def __init__(self, width: int = 320, height: int = 240, variants: int = 16) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._planes = [self._render(i, variants) for i in range(variants)]
        self.frames = 0

    def _render(self, index: int, variants: int) -> tuple[bytes, bytes, bytes]:
        w, h = self.width, self.height
        bar_w = max(w // variants, 8)
        x0 = index * (w - bar_w) // max(variants - 1, 1)
        row = bytearray([80] * w)
        row[x0 : x0 + bar_w] = bytes([235]) * bar_w
        luma = bytes(row) * h
        chroma = bytes([128]) * ((w // 2) * (h // 2))
        return luma, chroma, chroma

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        planes = self._planes[self.frames % len(self._planes)]
        for plane, data in zip(frame.planes, planes, strict=True):
            stride = plane.line_size
            width = plane.width
            if stride == width:
                plane.update(data)
            else:
                rows = [
                    data[r * width : (r + 1) * width].ljust(stride, b"\0")
                    for r in range(plane.height)
                ]
                plane.update(b"".join(rows))
        frame.pts = pts
        frame.time_base = time_base
        self.frames += 1
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone, 20 ms frames of 48 kHz mono s16."""

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        samples = 960
        self._chunk = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * i / 48000)))
            for i in range(samples)
        )
        self._samples = samples
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        # Pace like AudioStreamTrack does, then replace its silence with the tone.
        frame = await super().recv()
        tone = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        tone.planes[0].update(self._chunk)
        # AudioStreamTrack counts in 8 kHz units; this frame is 48 kHz (RTP timestamps that
        # advanced 160 a packet of 960 samples made Chromium conceal nearly every sample)
        tone.pts = frame.pts * 48000 // frame.sample_rate
        tone.sample_rate = 48000
        tone.time_base = fractions.Fraction(1, 48000)
        return tone


def encode_video_clip(
    seconds: float = 6.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    bitrate: int = 950_000,
    codec_name: str = "vp8",
) -> list[bytes]:
    """A clip with a keyframe every 2 s, encoded once so that publishing costs no encode.
    H264 comes out as Annex B, constrained baseline, SPS/PPS before each keyframe."""
    codec = av.CodecContext.create("libvpx" if codec_name == "vp8" else "libx264", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = 2 * fps
    if codec_name == "vp8":
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        codec.profile = "baseline"
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": "repeat-headers=1:bframes=0",
        }
    # A gradient with a moving noisy band: libvpx holds ~1 Mbit/s on it (pure noise overshoots).
    rng = random.Random(7)
    band = width * height // 20
    noise = [bytes(rng.getrandbits(8) for _ in range(band)) for _ in range(4)]
    gradient = bytes((x * 255) // width for x in range(width)) * height
    frames: list[bytes] = []
    for i in range(int(seconds * fps)):
        frame = av.VideoFrame(width, height, "yuv420p")
        luma = bytearray(gradient)
        at = (i * width * 2) % (width * height - band)
        luma[at : at + band] = noise[i % 4]
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128]) * (frame.planes[1].line_size * height // 2))
        frame.planes[2].update(bytes([128]) * (frame.planes[2].line_size * height // 2))
        frame.pts = i
        frame.time_base = codec.time_base
        for packet in codec.encode(frame):
            frames.append(bytes(packet))
    for packet in codec.encode(None):
        frames.append(bytes(packet))
    return frames


def encode_opus_clip(seconds: float = 6.0) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64000
    out: list[bytes] = []
    samples = 960
    for i in range(int(seconds * 50)):
        pcm = b"".join(
            struct.pack("<hh", v, v)
            for v in (
                int(6000 * math.sin(2 * math.pi * 440 * (i * samples + n) / 48000))
                for n in range(samples)
            )
        )
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = 48000
        frame.pts = i * samples
        frame.time_base = AUDIO_TB
        out.extend(bytes(p) for p in codec.encode(frame))
    return out


class ClipTrack(MediaStreamTrack):
    """Plays pre-encoded packets in real time, looping; aiortc only packetizes them.

    Tracks given the same ``start`` (a one-element list) share their clock: packet i of each
    is due at start + i * interval, from the first recv of either. With no encoder in the way,
    what the tracks say about time is true, which A/V sync tests need."""

    def __init__(
        self,
        kind: str,
        packets: list[bytes],
        interval: float,
        ticks: int,
        start: list[float | None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._ticks = ticks
        self._index = 0
        self._start = start if start is not None else [None]

    @staticmethod
    def shared_start() -> list[float | None]:
        return [None]

    @property
    def started_at(self) -> float | None:
        return self._start[0]

    @property
    def sent(self) -> int:
        return self._index

    async def recv(self) -> av.Packet:
        if self._start[0] is None:
            self._start[0] = time.monotonic()
        due = self._start[0] + self._index * self._interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self._index % len(self._packets)])
        packet.pts = self._index * self._ticks
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self._index += 1
        return packet


def clip_tracks(
    seconds: float = 6.0, codec_name: str = "vp8", width: int = 640, height: int = 360
) -> list[MediaStreamTrack]:
    """Audio + video that start on one clock (see ClipTrack.shared_start)."""
    video = encode_video_clip(seconds, width, height, codec_name=codec_name)
    audio = encode_opus_clip(seconds)
    start = ClipTrack.shared_start()
    return [
        ClipTrack("audio", audio, 0.02, 960, start),
        ClipTrack("video", video, 1 / 30, 3000, start),
    ]


# -- a hostile viewer's RTCP ------------------------------------------------------------------
def nack_of(sender: int, media: int, first: int, count: int) -> bytes:
    """A generic NACK (RFC 4585) for ``count`` sequence numbers from ``first``: one FCI of a
    packet id and a full 16-bit mask per 17."""
    fci = b"".join(struct.pack("!HH", (first + i) & 0xFFFF, 0xFFFF) for i in range(0, count, 17))
    return struct.pack("!BBHII", 0x81, 205, 2 + len(fci) // 4, sender, media) + fci


def absurd_receiver_report(sender: int, media: int) -> bytes:
    """Fraction lost 255, cumulative loss at its 24-bit limit, highest sequence, jitter and
    delay since the last SR at 2^32-1."""
    block = struct.pack("!IB", media, 255) + b"\x7f\xff\xff"
    block += struct.pack("!IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return struct.pack("!BBHI", 0x81, 201, 7, sender) + block


def remb(sender: int, media: int, bitrate: int) -> bytes:
    fci = pack_remb_fci(bitrate, [media])
    return struct.pack("!BBHII", 0x8F, 206, 2 + len(fci) // 4, sender, 0) + fci


def truncated(sender: int, media: int) -> list[bytes]:
    """Headers that promise more than follows (RR, NACK, SR, PLI), and a compound packet
    whose second part is cut short."""
    return [
        struct.pack("!BBHI", 0x81, 201, 7, sender),
        struct.pack("!BBHII", 0x81, 205, 5, sender, media) + b"\x00\x01",
        struct.pack("!BBHI", 0x80, 200, 6, sender) + b"\x00" * 4,
        struct.pack("!BBHI", 0x81, 206, 2, sender),
        struct.pack("!BBHI", 0x80, 201, 1, sender) + struct.pack("!BBH", 0x81, 205, 9),
    ]


def hostile_feedback(sender: int, video_ssrc: int, ssrcs: list[int], newest: int) -> list[bytes]:
    """One round of it: a NACK of the 1,000 video packets before ``newest`` (the viewer's
    sequence numbers), then for each of the relay's ``ssrcs`` an absurd receiver report,
    REMB of 0 and of 2^40, and the truncated packets."""
    packets = [nack_of(sender, video_ssrc, newest - 1000, 1000)]
    for ssrc in ssrcs:
        packets += [absurd_receiver_report(sender, ssrc), remb(sender, ssrc, 0)]
        packets += [remb(sender, ssrc, 2**40), *truncated(sender, ssrc)]
    return packets
