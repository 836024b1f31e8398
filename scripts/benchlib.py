"""Shared pieces of the benchmarks: pre-encoded media, counting viewers, process CPU.

Run only from scripts/bench_*.py (it is not part of the product)."""

from __future__ import annotations

import os

from media.fastpath import _DiscardFrames


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
