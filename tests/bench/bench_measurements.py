"""What the measurement panel adds to inference: time of ``compute_measurements`` + ``grade`` per radiograph.

    python tests/bench/bench_measurements.py [--cases 10] [--repeats 20]

Ground-truth landmarks of held-out synthetic knees of both renderers and phases (the panel's cost depends only on
the landmarks, not on the image); per case the median over ``repeats`` runs after one warm-up; then the median and
95th percentile over cases, next to the whole prediction's median time on one of them (shipped weights).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10, help="per renderer and phase")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from model.inference import KneeAligner
    from model.measurements import compute_measurements, grade
    from train.data.splits import held_out_seeds
    from train.data.synthetic import synthetic_sample

    per_case = []
    samples = [synthetic_sample(seed, phase, spacing_mm=0.5, renderer=renderer)
               for renderer in ("2d", "3d") for phase in ("preop", "postop")
               for seed in held_out_seeds("test", phase, args.cases)]
    for s in samples:
        conf = np.ones(s.scheme.n_points)

        def panel():
            grade(compute_measurements(s.landmarks, s.scheme, s.laterality, s.pixel_spacing_mm), conf, 0.5)

        panel()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            panel()
            times.append((time.perf_counter() - t) * 1000)
        per_case.append(statistics.median(times))
    aligner = KneeAligner.load()
    s = samples[0]
    aligner.predict_image(s.image, s.laterality, s.pixel_spacing_mm)
    totals = []
    for _ in range(3):
        t = time.perf_counter()
        aligner.predict_image(s.image, s.laterality, s.pixel_spacing_mm)
        totals.append((time.perf_counter() - t) * 1000)
    print(f"measurement panel: median {statistics.median(per_case):.2f} ms, 95th percentile "
          f"{float(np.percentile(per_case, 95)):.2f} ms per radiograph over {len(per_case)} cases "
          f"(both renderers and phases)")
    print(f"whole prediction (shipped weights, consistency copies included): median {statistics.median(totals):.0f} ms")


if __name__ == "__main__":
    main()
