"""The latency histograms behind ``/metrics``."""

from __future__ import annotations

import asyncio
import time

from server.histogram import Histogram, watch_loop_lag
from tests.waiting import until


def test_waits_counted_in_one_pass_land_where_single_observations_do():
    bounds = (0.001, 0.01, 0.1)
    starts = [0.2, 0.5, 0.93, 0.955, 0.9995, 0.99995]  # ascending, no wait on a bound
    now = 1.0
    one_by_one, batch = Histogram(bounds), Histogram(bounds)
    for start in starts:
        one_by_one.observe(now - start)
    batch.observe_waits(starts, now)
    assert batch.counts == one_by_one.counts == [2, 0, 2, 2]  # 0.8 and 0.5 past the last
    assert batch.count == 6 and abs(batch.sum - one_by_one.sum) < 1e-9
    batch.observe_waits([], now)
    assert batch.count == 6


def test_buckets_are_cumulative_up_to_inf_and_a_quantile_names_its_bucket():
    h = Histogram((0.01, 0.05))
    for value in (0.002, 0.004, 0.03, 0.07):
        h.observe(value)
    assert h.cumulative() == [("0.01", 2), ("0.05", 3), ("+Inf", 4)]
    assert Histogram((0.01,)).cumulative() == [("0.01", 0), ("+Inf", 0)]
    assert h.quantile_bound(0.5) == 0.01 and h.quantile_bound(0.75) == 0.05
    assert h.quantile_bound(0.99) is None  # past the last bound
    assert Histogram().quantile_bound(0.99) is None  # nothing observed


async def test_a_blocked_event_loop_shows_as_lag():
    lag = Histogram()
    watcher = asyncio.ensure_future(watch_loop_lag(lag, period_s=0.02))
    try:
        await until(lambda: lag.count >= 2)
        time.sleep(0.3)  # the loop's thread busy elsewhere: the watcher's timer is late
        await until(lambda: sum(lag.counts[lag.bounds.index(0.25) + 1 :]) >= 1)
    finally:
        watcher.cancel()
