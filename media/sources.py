"""Synthetic media for tests and benchmarks: a moving test pattern and a tone.

Frames are built from a handful of precomputed planes so the source itself costs little.
"""

from __future__ import annotations

import fractions
import math
import struct

import av
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


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
        tone.pts = frame.pts
        tone.sample_rate = 48000
        tone.time_base = fractions.Fraction(1, 48000)
        return tone
