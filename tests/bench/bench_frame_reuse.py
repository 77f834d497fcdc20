"""What one reading saves by cutting its frames through one ``FrameSampler`` (stop 47): the same radiograph read with
the frames' downsamplings shared, as the node reads it, and with a fresh downsampling (and mirror) for every frame, as
before; interleaved run by run (ABBA) in one process, so that the machine's drift falls on both alike.

    python tests/bench/bench_frame_reuse.py [--runs 30] [--seed 0] [--weights W]

Prints each way's median wall time per radiograph (decode included), the mean paired difference with a bootstrap 95 %
interval, and the whole-image downsamplings per reading. The results are the same bit for bit either way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time

import numpy as np


@contextlib.contextmanager
def fresh_frames():
    """Every frame downsampled afresh and every mirror made anew (the reading before ``FrameSampler``)."""
    from model.preprocess import FrameSampler

    shared_frame, shared_mirror = FrameSampler.frame, FrameSampler.mirrored

    def frame(self, matrix, spec):
        self._downsampled.clear()
        return shared_frame(self, matrix, spec)

    FrameSampler.frame = frame
    FrameSampler.mirrored = lambda self: FrameSampler(np.ascontiguousarray(self.image[:, ::-1]))
    try:
        yield
    finally:
        FrameSampler.frame, FrameSampler.mirrored = shared_frame, shared_mirror


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="readings each way (after one warm-up each)")
    parser.add_argument("--seed", type=int, default=0, help="which synthetic validation case to time")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()

    import pydicom
    import torch
    from bench_inference import _dicom_bytes

    import model.preprocess as preprocess
    from model.inference import KneeAligner
    from train.metrics import bootstrap_mean

    torch.set_num_threads(max(1, torch.get_num_threads()))
    aligner = KneeAligner.load(args.weights)
    data = _dicom_bytes(args.seed)
    made = []
    downsample = preprocess._downsample
    preprocess._downsample = lambda image, factor: made.append(factor) or downsample(image, factor)

    def read(fresh: bool) -> tuple[float, int]:
        made.clear()
        with fresh_frames() if fresh else contextlib.nullcontext():
            t = time.perf_counter()
            aligner.predict(pydicom.dcmread(io.BytesIO(data)))
            return (time.perf_counter() - t) * 1000, len(made)

    read(False), read(True)  # warm-up
    walls: dict[bool, list[float]] = {False: [], True: []}
    counts: dict[bool, int] = {}
    for i in range(args.runs):
        for fresh in ((False, True) if i % 2 == 0 else (True, False)):
            wall, counts[fresh] = read(fresh)
            walls[fresh].append(wall)
    diff, low, high = bootstrap_mean(np.array(walls[False]) - np.array(walls[True]), 2000, 0)
    print(json.dumps({
        "runs": args.runs, "threads": torch.get_num_threads(),
        "shared_median_ms": round(statistics.median(walls[False]), 1),
        "fresh_median_ms": round(statistics.median(walls[True]), 1),
        "shared_minus_fresh_ms": {"mean": round(diff, 1), "ci_low": round(low, 1), "ci_high": round(high, 1)},
        "downsamplings_per_reading": {"shared": counts[False], "fresh": counts[True]},
    }))


if __name__ == "__main__":
    main()
