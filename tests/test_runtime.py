"""Process settings of a running relay."""

from __future__ import annotations

import subprocess
import sys

from server.runtime import GC_THRESHOLDS


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
