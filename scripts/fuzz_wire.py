#!/usr/bin/env python3
"""Fuzz the wire parsers for longer than the suite does: the properties of
tests/test_fuzz_wire.py (RTP, RTCP, the pipe's feedback, SDP offers, the heartbeat
WebSocket's frames, the ledger's canonical form), random seeds, many examples each,
round after round until ``--minutes`` have passed.

    .venv/bin/python scripts/fuzz_wire.py [--minutes 2] [--examples 5000] [--only sdp_offer]

One line per parser and round (examples run, failures), the summary last:
    fuzz_wire: N examples in S s over P parsers, F failing
A failing property prints its smallest failing input (Hypothesis's report) and the script
exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.test_fuzz_wire import PROPERTIES, WireProperty  # noqa: E402


def run_round(prop: WireProperty, examples: int, deadline_at: float) -> tuple[int, str | None]:
    """Up to ``examples`` examples of one property (fewer once time is up); how many ran,
    and the failure's report if one failed."""
    count = 0

    def counted(value) -> None:
        nonlocal count
        if time.monotonic() > deadline_at:
            return  # out of time: the remaining examples pass at once
        count += 1
        prop.check(value)

    profile = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    try:
        profile(given(prop.inputs)(counted))()
    except Exception:  # noqa: BLE001 - the property's failure, reported
        return count, traceback.format_exc(limit=-3)
    return count, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="stop after this long")
    parser.add_argument("--examples", type=int, default=5_000, help="per parser and round")
    parser.add_argument("--only", action="append", help="this parser alone (repeatable)")
    args = parser.parse_args()
    chosen = [p for p in PROPERTIES if not args.only or p.name in args.only]
    if not chosen:
        parser.error(f"no such parser; there are {', '.join(p.name for p in PROPERTIES)}")
    started = time.monotonic()
    deadline_at = started + args.minutes * 60
    totals = {p.name: 0 for p in chosen}
    failing: dict[str, str] = {}
    rounds = 0
    while time.monotonic() < deadline_at and len(failing) < len(chosen):
        rounds += 1
        for prop in chosen:
            if prop.name in failing or time.monotonic() >= deadline_at:
                continue
            count, failure = run_round(prop, args.examples, deadline_at)
            totals[prop.name] += count
            state = "FAIL" if failure else "ok"
            print(f"round {rounds} {prop.name}: {count} examples, {state}", flush=True)
            if failure:
                failing[prop.name] = failure
                print(failure, flush=True)
    elapsed = time.monotonic() - started
    for name, count in totals.items():
        print(f"{name}: {count} examples{' FAILING' if name in failing else ''}")
    print(
        f"fuzz_wire: {sum(totals.values())} examples in {elapsed:.0f} s over {len(chosen)} "
        f"parsers, {len(failing)} failing{': ' + ', '.join(failing) if failing else ''}"
    )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
