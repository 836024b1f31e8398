#!/usr/bin/env python3
"""Attendance through the cluster's stream: edges' outboxes -> Redis -> the ledger writer.

What is real: redis-server (started here on a free 127.0.0.1 port, no persistence), each
edge's outbox and sender (``StreamLedger``, a SQLite file each), the stream writer
(``StreamWriter``) and the ledger with its writer process, as a home node runs them. What
stands in: the pages and the edges' HTTP handling (bench_attendance measures those); the edges
are objects in this process, each handed heartbeats at a steady rate.

The baseline, measured first in the same run: the same rate of heartbeats handed straight to
the ledger (``Ledger.submit``), as a home node's own viewers' are.

    .venv/bin/python scripts/bench_stream.py [--edges 3] [--rate 3000] [--seconds 10]

Last line:
  stream: E events from K edges, R events/s offered, A events/s into the ledger, edge ack p99
  X ms, in the ledger p99 Y ms (direct: Z ms), CPU per event U us (direct: V us), lost L
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import redis.asyncio as aioredis  # noqa: E402
from benchlib import cpu_seconds, scratch_dir  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from server.attendance.events import Heartbeat  # noqa: E402
from server.attendance.ledger import Ledger  # noqa: E402
from server.cluster.outbox import StreamLedger  # noqa: E402
from server.cluster.stream import StreamWriter  # noqa: E402

SESSION = "bench-stream"
TICK_S = 0.005


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start_redis(tmp: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("bench_stream: redis-server is not installed (scripts/test installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
    )
    return proc, port


async def wait_for_redis(redis: aioredis.Redis) -> None:
    for _ in range(200):
        try:
            await redis.ping()
            return
        except (OSError, RedisError):
            await asyncio.sleep(0.025)  # start-up of an external server
    raise SystemExit("bench_stream: redis-server did not start")


async def offer(submits: list, rate: float, seconds: float, stamps: list[list[float]]) -> int:
    """Hand heartbeats to ``submits`` in turn at ``rate`` a second for ``seconds``; each one's
    time goes into ``stamps`` (per submit, in order). Returns how many were handed over."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while (now := loop.time()) - start < seconds:
        for _ in range(int((now - start) * rate) - n):
            which = n % len(submits)
            stamps[which].append(time.perf_counter())
            submits[which](SESSION, Heartbeat(f"peer-{n % 4000}", n, True, True, n, n))
            n += 1
        await asyncio.sleep(TICK_S)
    return n


async def direct(path: Path, rate: float, seconds: float) -> tuple[list[float], float, int]:
    """The baseline: each heartbeat's time until durable in the ledger, its CPU per event."""
    ledger = Ledger(path, commit_interval_s=0.01, process=True)
    waits: list[float] = []
    stamps: list[list[float]] = [[]]

    def submit(session, event):
        at = time.perf_counter()
        ledger.submit(session, event).add_done_callback(
            lambda _f: waits.append(time.perf_counter() - at)
        )

    cpu0 = time.process_time() + cpu_seconds(ledger.writer_pid)
    n = await offer([submit], rate, seconds, stamps)
    while len(waits) < n:
        await asyncio.sleep(TICK_S)
    cpu = time.process_time() + cpu_seconds(ledger.writer_pid) - cpu0
    ledger.close()
    return waits, cpu / n, n


async def through_stream(
    tmp: Path, redis_url: str, redis_pid: int, edges: int, rate: float, seconds: float
) -> dict:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    await wait_for_redis(redis)
    ledger = Ledger(tmp / "ledger.sqlite3", commit_interval_s=0.01, process=True)
    senders = [  # each edge's outbox commits as the server's default has it
        StreamLedger(redis, f"edge-{i}/1", tmp / f"edge-{i}.sqlite3", 0.01) for i in range(edges)
    ]
    stamps: list[list[float]] = [[] for _ in senders]
    acks: list[float] = []
    in_ledger: list[float] = []
    marks = {s.box: 0 for s in senders}
    index = {s.box: i for i, s in enumerate(senders)}
    last_applied = [0.0]

    def written(_sessions) -> None:
        now = time.perf_counter()
        for box, mark in ledger.outbox_marks(list(marks)).items():
            times = stamps[index[box]]
            in_ledger.extend(now - times[row] for row in range(marks[box], mark))
            marks[box] = mark
        last_applied[0] = now

    writer = StreamWriter(redis, ledger, on_written=written)
    running = asyncio.ensure_future(writer.run())
    for sender in senders:
        sender.start()

    def submit_to(sender: StreamLedger):
        def submit(session, event):
            at = time.perf_counter()
            sender.submit(session, event).add_done_callback(
                lambda _f: acks.append(time.perf_counter() - at)
            )

        return submit

    pids = [ledger.writer_pid, redis_pid]
    cpu0 = [time.process_time(), *(cpu_seconds(p) for p in pids)]
    began = time.perf_counter()
    n = await offer([submit_to(s) for s in senders], rate, seconds, stamps)
    deadline = time.perf_counter() + 30
    while len(in_ledger) < n and time.perf_counter() < deadline:
        await asyncio.sleep(TICK_S)
    now = [time.process_time(), *map(cpu_seconds, pids)]
    cpu = [t - t0 for t, t0 in zip(now, cpu0, strict=True)]
    writer.stop()
    await asyncio.wait({running}, timeout=5)
    for sender in senders:
        await sender.aclose(timeout=1)
    stored = sum(r.kind == "heartbeat" for r in ledger.rows(SESSION))
    ledger.close()
    await redis.aclose()
    return {
        "offered": n,
        "acks": acks,
        "in_ledger": in_ledger,
        "applied_per_s": len(in_ledger) / max(last_applied[0] - began, 1e-9),
        "cpu_per_event": sum(cpu) / n,
        "cpu_parts": [c / n for c in cpu],  # this process, the ledger's writer, redis-server
        "lost": n - stored,
    }


async def main(args: argparse.Namespace) -> None:
    tmp = scratch_dir("bench-stream-")
    base_waits, base_cpu, base_n = await direct(tmp / "direct.sqlite3", args.rate, args.seconds)
    print(
        f"direct to the ledger: {base_n} events at {args.rate:.0f}/s, durable p50"
        f" {quantile(base_waits, 0.5) * 1000:.1f} ms, p99 {quantile(base_waits, 0.99) * 1000:.1f}"
        f" ms, CPU {base_cpu * 1e6:.0f} us per event"
    )
    proc, port = start_redis(tmp)
    try:
        r = await through_stream(
            tmp, f"redis://127.0.0.1:{port}/0", proc.pid, args.edges, args.rate, args.seconds
        )
    finally:
        proc.terminate()
        proc.wait(10)
    p99 = quantile(r["in_ledger"], 0.99) * 1000
    parts = r["cpu_parts"]
    base_p99 = quantile(base_waits, 0.99) * 1000
    print(
        f"through {args.edges} edges' outboxes and Redis: edge ack p50"
        f" {quantile(r['acks'], 0.5) * 1000:.1f} ms, p99 {quantile(r['acks'], 0.99) * 1000:.1f}"
        f" ms; in the ledger p50 {quantile(r['in_ledger'], 0.5) * 1000:.1f} ms, p99 {p99:.1f} ms"
        f" ({p99 / base_p99:.2f}x direct); CPU {r['cpu_per_event'] * 1e6:.0f} us per event"
        f" ({r['cpu_per_event'] / base_cpu:.2f}x direct: the edges and the stream writer"
        f" {parts[0] * 1e6:.0f}, the ledger's writer process {parts[1] * 1e6:.0f}, redis-server"
        f" {parts[2] * 1e6:.0f})"
    )
    print(
        f"stream: {r['offered']} events from {args.edges} edges, {args.rate:.0f} events/s"
        f" offered, {r['applied_per_s']:.0f} events/s into the ledger, edge ack p99"
        f" {quantile(r['acks'], 0.99) * 1000:.1f} ms, in the ledger p99 {p99:.1f} ms (direct:"
        f" {base_p99:.1f} ms), CPU per event {r['cpu_per_event'] * 1e6:.0f} us (direct:"
        f" {base_cpu * 1e6:.0f} us), lost {r['lost']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3000.0, help="events a second, in all")
    parser.add_argument("--seconds", type=float, default=10.0)
    os.environ.setdefault("LR_LOG_LEVEL", "WARNING")
    asyncio.run(main(parser.parse_args()))
