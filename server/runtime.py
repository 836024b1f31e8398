"""Settings for a long-running relay process (the primary and each media worker)."""

from __future__ import annotations

import asyncio
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


# A middle collection every fourth young one: pace_gc (its clock: Config.gc_pace_s, 25 ms).
GC_MIDDLE_EVERY = 4


async def pace_gc(interval_s: float, middle_every: int = GC_MIDDLE_EVERY) -> None:
    """Young collections every ``interval_s`` as well as on CPython's count, for as long as
    it runs (``interval_s`` 0: none, it returns at once).

    CPython starts a young collection once allocations outnumber deallocations by the first
    threshold. Under a steady load of heartbeats they nearly balance, while what thousands
    of sockets leave waiting for their next message (a coroutine, a future, the reader's
    frame: ~10 objects each, made anew for every message) piles up in the young generation:
    ``bench_attendance`` found 45,000-52,000 objects there, and young collections of 20-40 ms
    of CPU, with the middle generation's as long. On a clock each walk covers only what
    came since the last: pauses of 3-13 ms, for ~1 s more collector time a minute at
    ~5,500 events/s (docs/DECISIONS.md). Since the heartbeat sockets parse their own frames
    (server/web/lean_socket.py) less piles up, but without the clock the longest pauses are
    still 30-55 ms."""
    n = 0
    while interval_s > 0:
        await asyncio.sleep(interval_s)
        n += 1
        gc.collect(1 if n % middle_every == 0 else 0)
