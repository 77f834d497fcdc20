"""How well does the global stage alone place the two plateau corners, read with each heatmap decoder?

    python tests/bench/bench_global_decoder.py [--n 100] [--weights PATH ...] [--renderers 2d 3d]
                                                [--data validation|test]

The global stage reads the whole radiograph and gives the two tibial plateau corners that fix the landmark stages'
frame (``model.inference``). Its heatmaps can be decoded by the soft-argmax over the whole map ("integral") or by the
Taylor-refined peak ("peak", ``model.network.decode_heatmaps``); ``model.inference.DECODER`` names the one the node
uses. For each bundle, renderer, phase and decoder this bench prints the corner error (the worse of the two corners,
in % of the true plateau width: median, mean, cases beyond 10 % and 20 %) and how often the corners' left-right order
gives the right side. For the knees whose corners the node's decoder reads onto one point (the global stage cannot
tell which corner is which), it prints how many, how far the corners are once the maps' two modes are ordered by the
true side, as a laterality tag orders them (``KneeAligner.corners_told_apart``), and how often the right-knee
classifier, which orders them without a tag, reads the side right. By default on both renderers' *validation* seeds
(never the held-out sets; 40 % from the hard distribution, as ``bench_reference_shift.py``); ``--data test`` reads the
held-out test sets instead, to confirm a choice made on the validation seeds.
"""

from __future__ import annotations

import argparse

import numpy as np

DECODERS = ("integral", "peak")


def corner_errors(aligner, sample) -> dict[str, tuple[float, bool]]:
    """Per decoder: (the worse corner's error in % of the plateau width, whether the corners' order is right)."""
    truth = sample.landmarks[list(sample.scheme.roles["reference"])]
    width = float(np.linalg.norm(truth[1] - truth[0]))
    result = {}
    for method in DECODERS:
        points, _, _ = aligner.plateau_corners(sample.image, method)
        error = float(np.max(np.linalg.norm(points - truth, axis=1))) / width * 100
        same_order = (points[1, 0] < points[0, 0]) == (truth[1, 0] < truth[0, 0])
        result[method] = (error, bool(same_order))
    return result


def told_apart(aligner, sample) -> tuple[float, bool] | None:
    """For a knee whose corners the node's decoder reads onto one point: the worse corner's error (% of the plateau
    width) once the maps' two modes are ordered by the true side (nan when they show no two points) and whether the
    right-knee classifier reads the side right; None for the other knees."""
    from model.inference import DECODER, on_one_point
    from model.preprocess import UnsupportedImage
    from model.vocabulary import GLOBAL_STAGE

    points, _, aux = aligner.plateau_corners(sample.image, DECODER[GLOBAL_STAGE])
    if not on_one_point(points, sample.image.shape):
        return None
    truth = sample.landmarks[list(sample.scheme.roles["reference"])]
    classifier_right = (aux[0] >= 0.5) == (sample.laterality == "R")
    try:
        points, _ = aligner.corners_told_apart(sample.image, sample.laterality, float(aux[0]))
    except UnsupportedImage:
        return float("nan"), bool(classifier_right)
    error = float(np.max(np.linalg.norm(points - truth, axis=1))) / float(np.linalg.norm(truth[1] - truth[0])) * 100
    return error, bool(classifier_right)


def one_point_summary(found: list[tuple[float, bool]], n: int) -> str:
    if not found:
        return f"corners on one point: 0 of {n}"
    err = np.array([e for e, _ in found])
    told = err[~np.isnan(err)]
    spread = (f"worse corner median {np.median(told):.1f} %, max {told.max():.1f} %, > 20 %: {(told > 20).sum()}"
              if len(told) else "none")
    return (f"corners on one point: {len(found)} of {n}; told apart in the tag's order: {len(told)} ({spread}); "
            f"the right-knee classifier reads the side right on {sum(c for _, c in found)}")


def summary(rows: list[dict[str, tuple[float, bool]]], method: str) -> str:
    err = np.array([r[method][0] for r in rows])
    order = np.mean([r[method][1] for r in rows]) * 100
    return (f"median {np.median(err):.2f} %, mean {err.mean():.2f} %, > 10 %: {(err > 10).sum()}, "
            f"> 20 %: {(err > 20).sum()}, side from the corners right {order:.1f} %")


def main() -> None:
    from model.inference import KneeAligner
    from model.vocabulary import PHASE_NAMES
    from model.weights import DEFAULT_WEIGHTS
    from train.data.splits import held_out_seeds, validation_seeds
    from train.data.synthetic import render_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="cases per phase and renderer")
    ap.add_argument("--weights", nargs="+", default=[str(DEFAULT_WEIGHTS)], help="bundles (default: the shipped)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--renderers", nargs="+", choices=("2d", "3d"), default=["2d", "3d"])
    ap.add_argument("--data", choices=("validation", "test"), default="validation",
                    help="validation seeds (default) or the held-out test set (synthetic:test / xray3d:test)")
    args = ap.parse_args()
    aligners = {path: KneeAligner.load(path, device="cpu") for path in args.weights}
    for renderer in args.renderers:
        if args.data == "validation":
            jobs = [(seed, phase, k % 5 < 2, None, False, renderer)
                    for phase in PHASE_NAMES for k, seed in enumerate(validation_seeds(phase, args.n))]
        else:
            jobs = [(seed, phase, False, None, False, renderer)
                    for phase in PHASE_NAMES for seed in held_out_seeds("test", phase, args.n)]
        rows: dict[str, list[tuple[str, dict]]] = {path: [] for path in aligners}
        one_point: dict[str, list[tuple[str, tuple[float, bool]]]] = {path: [] for path in aligners}
        for sample in render_samples(jobs, args.workers, progress=False):
            for path, aligner in aligners.items():
                rows[path].append((sample.phase, corner_errors(aligner, sample)))
                found = told_apart(aligner, sample)
                if found is not None:
                    one_point[path].append((sample.phase, found))
        for path in aligners:
            for phase in PHASE_NAMES:
                sub = [r for p, r in rows[path] if p == phase]
                for method in DECODERS:
                    print(f"{renderer} {args.data} {phase} ({len(sub)}) {path} {method}: {summary(sub, method)}")
                found = [f for p, f in one_point[path] if p == phase]
                print(f"{renderer} {args.data} {phase} ({len(sub)}) {path}: {one_point_summary(found, len(sub))}")


if __name__ == "__main__":
    main()
