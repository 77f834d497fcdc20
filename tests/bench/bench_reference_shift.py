"""Do the distances the final plateau corners moved (from the global stage's, on refinement) predict a wrong result?

    python tests/bench/bench_reference_shift.py [--n 60] [--weights PATH] [--renderers 2d 3d]

``model.inference`` lowers the confidence as the final plateau corners move away from the global stage's
(``REFERENCE_SHIFT_LIMIT``). This bench measures whether that distance, or the distance they moved on refinement
(from the corners that built the final frame), tells good measurements from bad ones: on both renderers'
*validation* seeds (never the held-out sets; 40 % from the hard distribution), without the consistency copies, over
the cases that no other check flags (too little shaft, an implausible width, an uncertain side or phase, ...), it
prints per bin of each distance the number of cases, how many have the phase or the side wrong, and the FNTS error
against the ground truth at the prediction's own shaft levels (mean and 90th percentile) of the others. A check
that separates good from bad shows larger errors in its far bins.
"""

from __future__ import annotations

import argparse

import numpy as np

BINS = (0.0, 0.04, 0.07, 0.10, 0.15, 0.20, 0.30, np.inf)


def case_row(aligner, sample) -> dict | None:
    """The prediction's two shifts, and whether it is right; None when inference gives no result."""
    from model.alignment import compute_alignment
    from model.inference import GRADED_CHECKS
    from model.preprocess import UnsupportedImage

    try:
        pred = aligner.predict_image(sample.image, None, sample.pixel_spacing_mm)
    except UnsupportedImage:
        return None
    row = {"phase": sample.phase, **pred.reference_shift, "wrong": pred.phase != sample.phase
           or pred.laterality != sample.laterality, "error": np.nan,
           "flagged_otherwise": any(w.split(" (")[0] not in GRADED_CHECKS for w in pred.warnings)}
    if not row["wrong"]:
        truth = compute_alignment(sample.landmarks, sample.scheme, sample.laterality, levels=pred.alignment.levels)
        row["error"] = abs(pred.alignment.atfa_fnts_deg - truth.atfa_fnts_deg)
    return row


def print_bins(rows: list[dict], key: str) -> None:
    values = np.array([r[key] for r in rows])
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = [r for r, v in zip(rows, values) if lo <= v < hi]
        err = np.array([r["error"] for r in sel if not r["wrong"]])
        text = f"mean {err.mean():.2f} / p90 {np.percentile(err, 90):.2f} deg" if len(err) else "-"
        print(f"    {key} [{lo:.2f}, {hi:.2f}): n {len(sel)}, phase or side wrong {sum(r['wrong'] for r in sel)}, "
              f"FNTS error {text}")


def main() -> None:
    from model.inference import KneeAligner
    from train.data.splits import validation_seeds
    from train.data.synthetic import render_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="validation seeds per phase and renderer")
    ap.add_argument("--weights", default=None, help="a bundle (default: the shipped weights)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--renderers", nargs="+", choices=("2d", "3d"), default=["2d", "3d"])
    args = ap.parse_args()
    aligner = KneeAligner.load(args.weights, consistency=False)
    for renderer in args.renderers:
        jobs = [(seed, phase, k % 5 < 2, None, False, renderer)
                for phase in ("preop", "postop") for k, seed in enumerate(validation_seeds(phase, args.n))]
        rows = [r for s in render_samples(jobs, args.workers, progress=False) if (r := case_row(aligner, s))]
        for phase in ("preop", "postop"):
            sub = [r for r in rows if r["phase"] == phase and not r["flagged_otherwise"]]
            print(f"{renderer} {phase}: {len(sub)} cases with a result that no other check flags (of "
                  f"{sum(r['phase'] == phase for r in rows)} with a result)")
            for key in ("global", "frame"):
                print_bins(sub, key)


if __name__ == "__main__":
    main()
