#!/usr/bin/env python3
"""Fuzz the JSON API for longer than the suite does: the Schemathesis run of
tests/test_fuzz_api.py (each operation of the relay's own OpenAPI document, positive and
negative cases, every role's token), on a fresh relay, with random seeds, round after round
until ``--minutes`` have passed.

    .venv/bin/python scripts/fuzz_api.py [--minutes 5] [--examples 200] [--only /api/tasks]

One line per operation (cases run, the answers' statuses), the summary last:
    fuzz_api: N cases in S s over P operations, R rounds, F failing
A failure prints its case (as curl) and what was wrong; the script then exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import running_relay  # noqa: E402
from tests.test_fuzz_api import (  # noqa: E402
    Tally,
    api_schema,
    fuzz_operation,
    fuzzed_operations,
    seed_world,
)


async def main(args: argparse.Namespace) -> int:
    tally = Tally()
    started = time.monotonic()
    deadline_at = started + args.minutes * 60
    rounds = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with running_relay(Path(tmp)) as relay:
            world = await seed_world(relay)
            ops = [
                op
                for op in fuzzed_operations(api_schema(relay.app))
                if not args.only or args.only in op.path
            ]

            def rounds_until_time() -> int:
                done = 0
                while time.monotonic() < deadline_at and not tally.failures:
                    for op in ops:
                        fuzz_operation(
                            op,
                            relay.base_url,
                            world,
                            tally,
                            args.examples,
                            seed=random.getrandbits(64),
                            deadline_at=deadline_at,
                            shrink=True,
                        )
                        if time.monotonic() >= deadline_at:
                            break
                    done += 1
                return done

            rounds = await asyncio.to_thread(rounds_until_time)
    elapsed = time.monotonic() - started
    for name in sorted(tally.cases):
        statuses = collections.Counter(tally.statuses[name])
        shown = " ".join(f"{code}:{n}" for code, n in sorted(statuses.items()))
        print(f"{name:55s} {tally.cases[name]:7d}  {shown}")
    for failure in tally.failures:
        print(f"\nFAILED {failure}")
    print(
        f"fuzz_api: {tally.total} cases in {elapsed:.0f} s over {len(tally.cases)} operations,"
        f" {rounds} rounds, {len(tally.failures)} failing"
    )
    return 1 if tally.failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--examples", type=int, default=200, help="per operation, mode, round")
    parser.add_argument("--only", help="only the operations whose path contains this")
    sys.exit(asyncio.run(main(parser.parse_args())))
