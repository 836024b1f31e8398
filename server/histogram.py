"""Latency histograms with fixed bounds, shown in ``/metrics`` as Prometheus histograms, and
the event loop's lag, the one every other latency includes."""

from __future__ import annotations

import asyncio
from bisect import bisect_left

# Seconds: a heartbeat's 50 ms target sits on a bound, and a stalled disk shows up to 2.5 s.
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts per bucket (a value counts in the first bucket whose bound is >= it; the last
    bucket has no bound), their sum and how many there were."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_waits(self, starts: list[float], now: float) -> None:
        """Observe ``now - start`` for each of ``starts``, which must be in ascending order:
        a few bisections per bucket rather than one per start, for a batch of appends made
        durable at once."""
        n = len(starts)
        if not n:
            return
        below = 0  # how many waits fell in the buckets so far
        for i, bound in enumerate(self.bounds):
            # the waits within ``bound`` are those of the starts at or after ``now - bound``
            within = n - bisect_left(starts, now - bound)
            self.counts[i] += within - below
            below = within
        self.counts[-1] += n - below
        self.sum += n * now - sum(starts)
        self.count += n

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, how many were at most le)`` per bucket, ending with ``+Inf``: Prometheus's
        ``_bucket`` samples."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, None), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound is None else repr(bound), running))
        return out

    def quantile_bound(self, q: float) -> float | None:
        """The bound of the bucket that holds the ``q`` quantile: "at most this". None when
        nothing was observed or it lies past the last bound."""
        if not self.count:
            return None
        wanted, running = q * self.count, 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            if running >= wanted:
                return bound
        return None


async def watch_loop_lag(into: Histogram, period_s: float = 0.1) -> None:
    """Observe, every ``period_s``, how late the event loop ran a timer that was due: what
    any answer of this process waited besides its own work (the loop busy with others' work,
    or the process waiting for a core). Runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period_s
        await asyncio.sleep(period_s)
        into.observe(max(0.0, loop.time() - due))


def p99_ms(histogram: Histogram) -> float | None:
    """A histogram's p99 bound in milliseconds (None before its first sample)."""
    p99 = histogram.quantile_bound(0.99)
    return None if p99 is None else round(p99 * 1000, 3)
