"""Shared pieces of the benchmarks: pre-encoded media, counting viewers, process CPU.

Run only from scripts/bench_*.py (it is not part of the product)."""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import random
import struct
import time

import av
from aiortc.mediastreams import MediaStreamTrack

from media.fastpath import _DiscardFrames

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


def encode_vp8_clip(
    seconds: float = 6.0, width: int = 640, height: int = 360, fps: int = 30, bitrate: int = 950_000
) -> list[bytes]:
    """A VP8 clip with a keyframe every 2 s, encoded once so that publishing costs no encode."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = 2 * fps
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
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
    """Plays pre-encoded packets in real time, looping; aiortc only packetizes them."""

    def __init__(self, kind: str, packets: list[bytes], interval: float, ticks: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._ticks = ticks
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index * self._interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self._index % len(self._packets)])
        packet.pts = self._index * self._ticks
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self._index += 1
        return packet


def clip_tracks(seconds: float = 6.0) -> list[MediaStreamTrack]:
    video = encode_vp8_clip(seconds)
    audio = encode_opus_clip(seconds)
    return [ClipTrack("audio", audio, 0.02, 960), ClipTrack("video", video, 1 / 30, 3000)]


class PacketCounter:
    """Makes an aiortc viewer count its decrypted RTP packets instead of decoding them."""

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    def attach(self, pc) -> None:
        for t in pc.getTransceivers():
            t.receiver._RTCRtpReceiver__decoder_queue = _DiscardFrames()
        dtls = pc.getTransceivers()[0].receiver.transport

        async def count(data: bytes, arrival_time_ms: int) -> None:
            self.packets += 1
            self.octets += len(data)

        dtls._handle_rtp_data = count


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
