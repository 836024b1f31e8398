"""Shared pieces of the benchmarks: pre-encoded media, counting viewers, process CPU.

Run only from scripts/bench_*.py (it is not part of the product)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from media.fastpath import _DiscardFrames


def scratch_dir(prefix: str) -> Path:
    """A temporary directory for one run, removed when the benchmark exits (a run that fails
    too): a ledger of a long run is tens of megabytes."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


class PacketCounter:
    """Makes an aiortc viewer count the RTP packets it is sent instead of decoding them.

    Packets are counted as they arrive on the ICE socket, from their header (which SRTP leaves
    in the clear), before aioice's STUN check, its queue and the DTLS transport's decryption:
    a viewer then costs the load generator a few microseconds per packet instead of ~30, so
    that on a small machine the relay, not the viewers, runs out of CPU first. STUN (consent),
    DTLS and RTCP still take aiortc's own path."""

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    def count(self, data: bytes) -> None:
        self.packets += 1
        self.octets += len(data)

    def attach(self, pc) -> None:
        for t in pc.getTransceivers():
            t.receiver._RTCRtpReceiver__decoder_queue = _DiscardFrames()
        dtls = pc.getTransceivers()[0].receiver.transport
        count = self.count
        for protocol in dtls.transport._connection._protocols:
            original = protocol.datagram_received

            def received(data: bytes, addr, _orig=original) -> None:
                # RTP (RFC 7983: first byte 128-191) but not RTCP (packet types 192-223)
                if 127 < data[0] < 192 and not 191 < data[1] < 224:
                    count(data)
                else:
                    _orig(data, addr)

            protocol.datagram_received = received


def _stat_cpu(path: str) -> tuple[str, float]:
    """A /proc ``stat`` file's name and user + system CPU seconds."""
    with open(path) as f:
        stat = f.read()
    name, rest = stat[stat.index("(") + 1 :].rsplit(")", 1)
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    return _stat_cpu(f"/proc/{pid}/stat")[1]


def thread_cpu(top: int = 4) -> list[tuple[str, float]]:
    """This process's busiest threads: (name, CPU seconds), from /proc."""
    threads = [_stat_cpu(f"/proc/self/task/{tid}/stat") for tid in os.listdir("/proc/self/task")]
    return sorted(threads, key=lambda t: -t[1])[:top]
