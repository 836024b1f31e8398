"""Settings for a long-running relay process (the primary and each media worker)."""

from __future__ import annotations

import gc

# A young-generation collection every 50,000 container allocations instead of CPython's 700.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect reference cycles less often, and never again walk what start-up allocated.

    Under load every heartbeat allocates futures, task steps and message dicts, so CPython's
    default ran a collection thousands of times a second, each walking the live young objects
    (every member's socket and task among them): in ``bench_attendance`` at ~5,000 events/s
    this cost ~10% of the relay's CPU and doubled its p99 (docs/DECISIONS.md). Cycles are
    still collected; a collection now waits for more garbage."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
