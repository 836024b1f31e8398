#!/usr/bin/env python3
"""Micro-benchmark of the per-packet loop alone: Forwarder.push to N downtracks with real SRTP
sessions and a real UDP socket, against the floor (protect + sendto of the same packets with no
relay logic), in the same run. Receivers are sockets drained by another process.

    .venv/bin/python scripts/bench_forwarder.py [--viewers 50] [--seconds 3]

Last line: ``forwarder: N viewers, X us/pkt loop, F us/pkt floor, R x floor``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_fanout import measure_floor  # noqa: E402
from pylibsrtp import Policy, Session  # noqa: E402

from media.forwarder import Downtrack, Forwarder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/bench_fanout.py"), "_sink", str(args.viewers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ports = [int(p) for p in sink.stdout.readline().split()]
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.setblocking(False)
        fwd = Forwarder("audio", 48000)
        for i, port in enumerate(ports):
            policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
            policy.allow_repeat_tx = True
            dt = Downtrack(1000 + i, 96, [(4, b"1")])
            dt.bind(Session(policy).protect, out.sendto, ("127.0.0.1", port))
            fwd.add(dt)
        payload = os.urandom(1100)
        start = time.process_time()
        end = time.monotonic() + args.seconds
        seq = 0
        while time.monotonic() < end:
            seq = (seq + 1) & 0xFFFF
            fwd.push(0xABCD, seq, seq * 960, 0, payload)
        loop = (time.process_time() - start) * 1e6 / max(fwd.packets_out, 1)
    finally:
        sink.terminate()
        sink.wait()
    floor = measure_floor(args.viewers, args.seconds)
    print(f"send errors {fwd.send_errors} of {fwd.packets_out}")
    print(
        f"forwarder: {args.viewers} viewers, {loop:.2f} us/pkt loop, "
        f"{floor:.2f} us/pkt floor, {loop / floor:.2f}x floor"
    )


if __name__ == "__main__":
    main()
