"""Two ways of doing one thing timed against each other in one process, interleaved run by run (ABBA), so that the
machine's drift between runs falls on both alike; used by the A/B benchmarks (``bench_frame_reuse``,
``bench_traced``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np


def interleaved(time_one: Callable[[bool], float], runs: int) -> dict[bool, list[float]]:
    """``time_one(b)`` for b = False and True ``runs`` times each, alternately ABBA, after one warm-up each; the
    times per way in run order."""
    time_one(False), time_one(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(runs):
        for way in ((False, True) if i % 2 == 0 else (True, False)):
            times[way].append(time_one(way))
    return times


def compared(times: dict[bool, list[float]], names: tuple[str, str]) -> dict:
    """Each way's median (``names``: False's, True's) and the mean paired difference True - False with a bootstrap
    95 % interval, in ms."""
    from train.metrics import bootstrap_mean

    diff, low, high = bootstrap_mean(np.array(times[True]) - np.array(times[False]), 2000, 0)
    return {f"{names[0]}_median_ms": round(statistics.median(times[False]), 1),
            f"{names[1]}_median_ms": round(statistics.median(times[True]), 1),
            f"{names[1]}_minus_{names[0]}_ms": {"mean": round(diff, 1), "ci_low": round(low, 1),
                                                  "ci_high": round(high, 1)}}
