"""Does the image show the femoral notch where the ground truth puts it?

    python tests/bench/bench_notch_visibility.py [--n 376] [--phases postop] [--seeds test|val] [--without-box-cut]

An annotator marks the notch where the radiograph shows an edge. For each knee of the 3D renderer this prints how
much the image changes across the ground-truth notch outline at the two points whose midpoint is the FNTS notch
centre (``femoral_notch``): the intensity 3 % of the plateau width outside the outline against 3 % inside, along the
outline's normal, on the image smoothed by 0.5 % of the plateau width, in percent of the image's range (1st to 99th
percentile). Then the knees whose weaker point is below each candidate contrast. ``--without-box-cut`` measures
the renderer as it was before version 1.3, which left the native notch's bone in the femoral component's box
(``train.xray3d.bones._box_cut``). With ``--weights``, each knee is also read (without the consistency copies) and
the FNTS error of the confident knees read in the right phase and side, against the ground truth at the shaft
levels the reading used, is split by contrast.
"""

from __future__ import annotations

import argparse

import numpy as np

OFFSET = 0.03  # of the plateau width, either side of the outline
SMOOTHING = 0.005  # Gaussian sigma, of the plateau width
CANDIDATES = (3.0, 5.0, 8.0)  # percent of the image's range


def notch_contrast(image: np.ndarray, landmarks: np.ndarray, scheme) -> float:
    """The weaker of the two FNTS notch points' contrasts (percent of the image's range)."""
    import cv2

    corners = landmarks[list(scheme.roles["reference"])]
    width = float(np.linalg.norm(corners[1] - corners[0]))
    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), SMOOTHING * width)
    span = float(np.percentile(img, 99) - np.percentile(img, 1)) or 1.0
    out = []
    for i in scheme.roles["femoral_notch"]:
        t = landmarks[i + 1] - landmarks[i - 1]
        n = np.array([-t[1], t[0]]) / np.linalg.norm(t)
        a, b = (landmarks[i] + s * OFFSET * width * n for s in (1.0, -1.0))
        va, vb = (float(cv2.getRectSubPix(img, (1, 1), (float(p[0]), float(p[1])))[0, 0]) for p in (a, b))
        out.append(100.0 * abs(va - vb) / span)
    return min(out)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def confident_fnts_error(aligner, sample) -> float:
    """|FNTS error| (degrees) of a confident reading in the right phase and side; NaN otherwise."""
    from bench_notch_depth import read_with_truth

    read = read_with_truth(aligner, sample)
    if read is None or read[0].low_confidence:
        return float("nan")
    p, truth = read
    return abs(p.alignment.atfa_fnts_deg - truth.atfa_fnts_deg)


def main() -> None:
    from model.vocabulary import PHASE_NAMES
    from train.data.splits import N_TEST_PER_PHASE, held_out_seeds, validation_seeds
    from train.data.synthetic import synthetic_sample

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N_TEST_PER_PHASE, help="knees per phase")
    ap.add_argument("--phases", nargs="+", choices=PHASE_NAMES, default=["postop"])
    ap.add_argument("--seeds", choices=("test", "val"), default="test", help="held-out or validation seeds")
    ap.add_argument("--without-box-cut", action="store_true", help="renderer 1.2: bone left in the box")
    ap.add_argument("--weights", help="also read each knee with these weights (e.g. the shipped)")
    args = ap.parse_args()
    if args.without_box_cut:
        import train.xray3d.bones as bones
        from train.xray3d.solids import Box

        bones._box_cut = lambda imp, lay: Box((0.0, 0.0, 1e6), (0.0, 0.0, 1e6))  # a hole of no volume, far away
    aligner = None
    if args.weights:
        from model.inference import KneeAligner

        aligner = KneeAligner.load(args.weights, device="cpu", consistency=False)
    for phase in args.phases:
        seeds = held_out_seeds("test", phase, args.n) if args.seeds == "test" else validation_seeds(phase, args.n)
        rows = []
        for seed in seeds:
            s = synthetic_sample(seed, phase, renderer="3d")
            rows.append((notch_contrast(s.image, s.landmarks, s.scheme),
                         np.nan if aligner is None else confident_fnts_error(aligner, s)))
        c, e = np.array(rows).T
        print(f"3D renderer, {phase}, {len(c)} {args.seeds} knees: notch contrast median {np.median(c):.1f} %, "
              f"5th percentile {np.percentile(c, 5):.1f} %")
        for limit in CANDIDATES:
            low, read = c < limit, ~np.isnan(e)
            line = f"  below {limit:g} %: {int(low.sum())} knees"
            if aligner is not None:
                line += (f"; confident FNTS MAD {_mean(e[low & read]):.2f} deg ({int((low & read).sum())} knees), "
                         f"the others {_mean(e[~low & read]):.2f} deg ({int((~low & read).sum())})")
            print(line)


if __name__ == "__main__":
    main()
