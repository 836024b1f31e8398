"""Settings for a long-running relay process (the primary and each media worker)."""

from __future__ import annotations

import gc

# Young collections every 2,000 container allocations (CPython: 700), the middle generation
# every 10 of them (as CPython), the oldest every 1,000 of those (10; CPython also waits until
# a quarter of the long-lived objects are new).
GC_THRESHOLDS = (2_000, 10, 1_000)


def tune_gc() -> None:
    """Never again walk what start-up allocated, and walk the oldest generation rarely.

    Under load every heartbeat allocates futures, task steps and message dicts, and with
    CPython's defaults the older generations were walked again and again over every member's
    socket and task. ``bench_attendance`` (docs/DECISIONS.md): the relay's p99 halved and it
    took ~15% more events a second. A large young generation (50,000) was worse than this:
    longer pauses, more cache misses. The middle generation is walked every 10 young
    collections, not 100: in an arrival surge each walk covers a tenth as many new
    connections (pauses of 12-35 ms instead of 78-102 ms). Cycles are still collected."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
