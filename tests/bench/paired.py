"""Two ways of doing one thing timed against each other in one process, interleaved run by run (ABBA), so that the
machine's drift between runs falls on both alike; used by the A/B benchmarks (``bench_frame_reuse``,
``bench_traced``)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np


def parser(doc: str) -> argparse.ArgumentParser:
    """An A/B benchmark's command line: ``--runs``, ``--seed`` (the synthetic validation case), ``--weights``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="readings each way (after one warm-up each)")
    p.add_argument("--seed", type=int, default=0, help="which synthetic validation case to time")
    p.add_argument("--weights", default=None)
    return p


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
