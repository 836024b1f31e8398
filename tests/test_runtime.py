"""Process settings of a running relay."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

from server.runtime import GC_THRESHOLDS, pace_gc
from tests.waiting import until


def test_tune_gc_freezes_start_up_and_raises_the_thresholds():
    # In a child process: the test runner's own collector is left as it is.
    code = (
        "import gc; from server.runtime import tune_gc; before = gc.get_freeze_count(); "
        "tune_gc(); print(before, gc.get_freeze_count(), *gc.get_threshold())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, frozen, *thresholds = map(int, out.stdout.split())
    assert before == 0 and frozen > 1000  # the modules and objects start-up made
    assert tuple(thresholds) == GC_THRESHOLDS


async def test_pace_gc_collects_young_and_middle_generations_on_its_clock():
    # With the automatic collector off, every collection seen is the pacer's.
    seen: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    pacer = asyncio.ensure_future(pace_gc(0.005, 3))
    try:
        await until(lambda: len(seen) >= 9, timeout=10, interval=0.01)
    finally:
        pacer.cancel()
        gc.callbacks.remove(record)
        if was_enabled:
            gc.enable()
    assert seen[:9] == [0, 0, 1, 0, 0, 1, 0, 0, 1]


async def test_pace_gc_with_no_interval_returns_at_once():
    """``LR_GC_PACE=0``: no clock (collections come on CPython's count alone): it returns
    at once rather than running until cancelled."""
    assert await asyncio.wait_for(pace_gc(0), 5) is None
