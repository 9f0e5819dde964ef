"""Timing helpers shared by the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["median_pair"]


def median_pair(f: Callable[[], object], g: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Medians (seconds) of ``f`` and ``g`` timed alternately, after one warm-up call each.

    Alternating the two calls exposes both to the same load, so their ratio is fair on a busy
    machine.
    """
    f(), g()
    tf, tg = [], []
    clock = time.perf_counter
    for _ in range(repeats):
        t0 = clock()
        f()
        t1 = clock()
        g()
        t2 = clock()
        tf.append(t1 - t0)
        tg.append(t2 - t1)
    return statistics.median(tf), statistics.median(tg)
