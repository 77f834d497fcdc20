"""How deep is the femoral notch, read and in the ground truth, and how far off is FNTS where it is shallow?

    python tests/bench/bench_notch_depth.py [--n 200] [--renderers 2d 3d] [--phases postop] [--weights PATH]

FNTS draws the femoral axis to the notch's midpoint; a notch with no roof above the condyles (a femoral component
whose box does not show) leaves that midpoint nowhere in particular, and the node flags the result below
``model.alignment.MIN_NOTCH_DEPTH`` (``model.inference``). For each renderer and phase, on the *validation* seeds (40 %
from the hard distribution, never the held-out sets), this prints the knees read in the right phase and side, the
shallowest notch depths read (with the ground truth's, FNTS and FTS errors against the ground truth at the same shaft
levels, and the confidence the node gives without its consistency copies and without this check), and the FNTS error
of the knees below each candidate depth against those above.
"""

from __future__ import annotations

import argparse

import numpy as np

CANDIDATES = (0.01, 0.02, 0.03, 0.05, 0.08)


def read_with_truth(aligner, sample):
    """``(prediction, ground truth at the shaft levels the prediction used)`` for a knee read in its phase and side
    (laterality from the image), else None."""
    from model.alignment import compute_alignment
    from model.preprocess import UnsupportedImage

    try:
        p = aligner.predict_image(sample.image, None, sample.pixel_spacing_mm)
    except UnsupportedImage:
        return None
    if (p.phase, p.laterality) != (sample.phase, sample.laterality):
        return None
    return p, compute_alignment(sample.landmarks, sample.scheme, sample.laterality, sample.pixel_spacing_mm,
                                p.alignment.levels)


def rows_of(aligner, samples) -> list[tuple[float, float, float, float, float]]:
    """Per knee read in the right phase and side: (depth read, depth true, |FNTS error|, |FTS error|, confidence)."""
    from model.alignment import notch_depth

    rows = []
    for s in samples:
        read = read_with_truth(aligner, s)
        if read is None:
            continue
        p, truth = read
        scheme = aligner.schemes[p.phase]
        rows.append((notch_depth(p.landmarks, scheme, s.pixel_spacing_mm),
                     notch_depth(s.landmarks, s.scheme, s.pixel_spacing_mm),
                     abs(p.alignment.atfa_fnts_deg - truth.atfa_fnts_deg),
                     abs(p.alignment.atfa_fts_deg - truth.atfa_fts_deg), p.confidence))
    return rows


def main() -> None:
    import model.inference as inference
    from model.inference import KneeAligner
    from model.vocabulary import PHASE_NAMES
    from model.weights import DEFAULT_WEIGHTS
    from train.data.splits import validation_seeds
    from train.data.synthetic import render_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="cases per phase and renderer")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="bundle (default: the shipped)")
    ap.add_argument("--renderers", nargs="+", choices=("2d", "3d"), default=["2d", "3d"])
    ap.add_argument("--phases", nargs="+", choices=PHASE_NAMES, default=list(PHASE_NAMES))
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = ap.parse_args()
    inference.MIN_NOTCH_DEPTH = float("-inf")  # the confidence without this check: what it would change
    aligner = KneeAligner.load(args.weights, device="cpu", consistency=False)
    for renderer in args.renderers:
        for phase in args.phases:
            jobs = [(seed, phase, k % 5 < 2, None, False, renderer)
                    for k, seed in enumerate(validation_seeds(phase, args.n))]
            a = np.array(rows_of(aligner, render_samples(jobs, args.workers, progress=False)))
            print(f"{renderer} {phase}: {len(a)} of {len(jobs)} knees read in the right phase and side")
            print("  shallowest (depth read, true, |FNTS error| deg, |FTS error| deg, confidence):")
            for r in a[np.argsort(a[:, 0])][:5]:
                print(f"    {100 * r[0]:.1f} %, {100 * r[1]:.1f} %, {r[2]:.2f}, {r[3]:.2f}, {r[4]:.2f}")
            confident = a[:, 4] >= aligner.confidence_threshold
            for limit in CANDIDATES:
                below = a[:, 0] < limit
                sub = a[below & confident, 2]
                rest = a[~below & confident, 2]
                print(f"  below {100 * limit:g} %: {below.sum()} knees ({len(sub)} confident, FNTS MAD "
                      f"{sub.mean() if len(sub) else float('nan'):.2f} deg); confident above: {len(rest)}, "
                      f"{rest.mean() if len(rest) else float('nan'):.2f} deg")


if __name__ == "__main__":
    main()
