"""The benchmarks still run against the product as it is now: a tiny run of each that is quick
enough for the suite, checked for its summary line (their numbers are not asserted: speed is
measured by running them in full, never by a test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float = 120) -> list[str]:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout.strip().splitlines()


def test_bench_attendance_runs_and_refuses_nothing():
    # members leaving over WebSockets, then over POSTs, then still watching at the end
    for heartbeats, stay in (("ws", False), ("http", False), ("ws", True)):
        lines = run_bench(
            "scripts/bench_attendance.py",
            "--participants", "40", "--rounds", "2", "--interval", "0.2", "--ramp", "0.5",
            "--roster", "200", "--heartbeats", heartbeats,
            *(("--stay",) if stay else ()),
        )  # fmt: skip
        assert any(line.startswith("ledger: ") and " 0 HTTP errors" in line for line in lines)
        if stay:  # the lecture ended on them; each connection's leave is in (else exit 1)
            assert any(
                line.startswith("report: the session ended with 40 members watching")
                for line in lines
            ), lines
        # the same load through a bare aiohttp application first, nothing refused there
        assert any(
            line.startswith("floor (bare aiohttp") and line.endswith(" 0 errors") for line in lines
        ), lines
        # where the relay says heartbeats waited, from its /metrics: every one of them counted
        (waits,) = [line for line in lines if line.startswith("the relay's /metrics: ")]
        durable = re.search(r"appends until durable p99 <= [\d.]+ ms, \d+ of (\d+) over", waits)
        assert durable and int(durable[1]) >= 40 * 2, waits
        last = lines[-1]
        assert re.fullmatch(
            r"attendance: 40 participants, \d+ events, \d+ events/s, p99 ack [\d.]+ ms, "
            r"report [\d.]+ s, roster [\d.]+ s, lost 0",
            last,
        ), last


def test_bench_attendance_checks_counts_every_answer():
    lines = run_bench(
        "scripts/bench_attendance.py", "--checks", "--participants", "40", "--answer-spread", "1"
    )
    assert re.fullmatch(
        r"rollcall: 40 members, 40 answers, p99 ack [\d.]+ ms, counted 40, lost 0", lines[-1]
    ), lines


def test_bench_stream_runs_and_loses_nothing():
    lines = run_bench("scripts/bench_stream.py", "--edges", "2", "--rate", "300", "--seconds", "1")
    assert lines[0].startswith("direct to the ledger: ")
    last = lines[-1]
    assert re.fullmatch(
        r"stream: \d+ events from 2 edges, 300 events/s offered, \d+ events/s into the ledger, "
        r"edge ack p99 [\d.]+ ms, in the ledger p99 [\d.]+ ms \(direct: [\d.]+ ms\), "
        r"CPU per event \d+ us \(direct: \d+ us\), lost 0",
        last,
    ), last
