"""Do the landmark stages confirm the pre/post-op decision? The evidence behind ``IMPLANT_OUTLINE_EVIDENCE``.

    python tests/bench/bench_phase_outline.py [--weights PATH ...] [--data synthetic:val xray3d:val] [--n 100]

The implant stage (or the global stage's logit) decides the phase; ``model.inference`` then asks the landmark
stages: the post-op stage's mean heatmap confidence on the implant's outlines minus the pre-op stage's on its
landmarks (``KneeAligner.outline_confidences``), at least the bundle's split (``IMPLANT_OUTLINE_EVIDENCE`` unless
the bundle carries its own) for an implant; where the two disagree the result is low-confidence and measured in the
landmark stages' phase. For each bundle and data set this bench prints, per true phase, that evidence (minimum,
median, maximum) and how often each cue reads the phase right, and how the two agree. Each knee is read on its true
side, in the global stage's frame, so that the phase is all that is measured. The default reads the validation
seeds (``knee-train evaluate``'s ``synthetic:val`` / ``xray3d:val``), where the split was chosen; a held-out set
(``xray3d:test``) confirms it.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def read_phase(aligner, sample) -> tuple[float, float] | None:
    """``(implant probability, evidence)`` of one knee on its true side; None when no comparison is possible."""
    from model.frames import mirror_points
    from model.vocabulary import IMPLANT_STAGE

    reference, _, aux = aligner.plateau_corners(sample.image)
    image, w = sample.image, sample.image.shape[1]
    if sample.laterality == "R":
        image, reference = np.ascontiguousarray(image[:, ::-1]), mirror_points(reference, w)
    p_implant = aligner._implant_probability(image, reference) if IMPLANT_STAGE in aligner.nets else float(aux[1])
    found = aligner.outline_confidences(image, reference)
    return None if found is None else (p_implant, found[0] - found[1])


def report(rows: list[tuple[str, float, float]], split: float) -> list[str]:
    """Lines for (true phase, implant probability, evidence) rows."""
    from model.inference import IMPLANT_PROBABILITY_SPLIT
    from model.vocabulary import PHASE_NAMES, POSTOP, PREOP

    lines = []
    for phase in PHASE_NAMES:
        ev = np.array([e for p, _, e in rows if p == phase])
        if len(ev):
            lines.append(f"  {phase}: {len(ev)} knees, evidence min {ev.min():+.3f}, median {np.median(ev):+.3f}, "
                         f"max {ev.max():+.3f}")
    agree = Counter()
    for phase, p_implant, evidence in rows:
        stage = POSTOP if p_implant >= IMPLANT_PROBABILITY_SPLIT else PREOP
        outlines = POSTOP if evidence >= split else PREOP
        agree[(stage == phase, outlines == phase)] += 1
    n = len(rows)
    stage_right = agree[(True, True)] + agree[(True, False)]
    outlines_right = agree[(True, True)] + agree[(False, True)]
    lines.append(f"  phase right: implant stage {stage_right} of {n}, landmark stages at {split:+.3f} "
                 f"{outlines_right} of {n}")
    lines.append(f"  the two disagree on {agree[(True, False)] + agree[(False, True)]} knees (flagged, measured in the "
                 f"landmark stages' phase): they are right on {agree[(False, True)]}, the implant stage on "
                 f"{agree[(True, False)]}; both wrong: {agree[(False, False)]}")
    return lines


def main() -> None:
    from model.inference import KneeAligner
    from model.weights import DEFAULT_WEIGHTS
    from train.evaluate import resolve_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[str(DEFAULT_WEIGHTS)], help="bundles (default: the shipped)")
    ap.add_argument("--data", nargs="+", default=["synthetic:val", "xray3d:val"], help="evaluation sets")
    ap.add_argument("--n", type=int, default=100, help="cases per phase of a synthetic set")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = ap.parse_args()
    aligners = {path: KneeAligner.load(path, device="cpu", consistency=False) for path in args.weights}
    for spec in args.data:
        rows: dict[str, list[tuple[str, float, float]]] = {path: [] for path in aligners}
        for sample in resolve_data(spec, args.n, args.workers, progress=False).samples():
            for path, aligner in aligners.items():
                read = read_phase(aligner, sample)
                if read is not None:
                    rows[path].append((sample.phase, *read))
        for path in aligners:
            print(f"{path} on {spec}:")
            print("\n".join(report(rows[path], aligners[path].implant_outline_evidence)))


if __name__ == "__main__":
    main()
