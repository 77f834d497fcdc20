"""How far are pre-annotations from reference annotations? The quality of what ``knee-train preannotate`` wrote.

    python tests/bench/bench_preannotation.py runs/preannotated/manifest.csv --reference path/to/annotations

For every entry of the pre-annotation manifest whose image has a reference annotation (a JSON file of the same stem
under ``--reference``: your corrected annotations, or the ground truth ``knee-train synth`` writes), per split
(``train``, ``val``: confident readings; ``flagged``: low-confidence ones): how many were read in the reference's
phase and on its side, their landmark error (the mean distance over the points the pre-annotation saw, in percent of
the reference's plateau width; mean, median, 95th percentile) and their aTFA (FNTS) against the reference's, both
measured at the paper's fixed shaft levels. This says how much correcting the readings need, and what a run that
self-trains on them learns from.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def compare(manifest: Path, reference: Path) -> dict[str, dict]:
    from model.alignment import compute_alignment
    from model.scheme import load_scheme
    from train.data.annotations import read_annotation
    from train.data.manifest import read_manifest

    truths = {p.stem: p for p in reference.rglob("*.json")}
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for entry in read_manifest(manifest):
        truth_path = truths.get(entry.image.stem)
        if truth_path is None:
            continue
        pre, ref = read_annotation(entry.landmarks), read_annotation(truth_path)
        g = groups[entry.split or "-"]
        g["n"].append(1)
        right = pre.phase == ref.phase and pre.laterality == ref.laterality
        g["phase_right"].append(pre.phase == ref.phase)
        g["side_right"].append(pre.laterality == ref.laterality)
        if not right:
            continue
        scheme = load_scheme(ref.phase)
        corners = ref.landmarks[list(scheme.roles["reference"])]
        width = float(np.linalg.norm(corners[0] - corners[1]))
        seen = np.ones(len(ref.landmarks), bool)
        seen[list(pre.unseen)] = False
        g["rp2p"].append(100 * float(np.linalg.norm(pre.landmarks - ref.landmarks, axis=1)[seen].mean()) / width)
        a, b = (compute_alignment(x.landmarks, scheme, ref.laterality) for x in (pre, ref))
        g["fnts"].append(a.atfa_fnts_deg - b.atfa_fnts_deg)
    return {split: _summary(g) for split, g in sorted(groups.items())}


def _summary(g: dict[str, list]) -> dict:
    rp2p, fnts = np.asarray(g["rp2p"]), np.abs(np.asarray(g["fnts"]))
    out = {"n": len(g["n"]), "phase_right": int(sum(g["phase_right"])), "side_right": int(sum(g["side_right"])),
           "read_right": len(rp2p)}
    if len(rp2p):
        out.update(rp2p_mean=float(rp2p.mean()), rp2p_median=float(np.median(rp2p)),
                   rp2p_p95=float(np.percentile(rp2p, 95)), fnts_mad=float(fnts.mean()),
                   fnts_max=float(fnts.max()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="the manifest.csv knee-train preannotate wrote")
    parser.add_argument("--reference", type=Path, required=True, help="folder of reference JSON annotations")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    result = compare(args.manifest, args.reference)
    for split, s in result.items():
        line = (f"{split:8s} n {s['n']:4d}  phase right {s['phase_right']:4d}  side right {s['side_right']:4d}"
                f"  both right {s['read_right']:4d}")
        if "rp2p_mean" in s:
            line += (f"  rP2P mean / median / 95th {s['rp2p_mean']:.2f} / {s['rp2p_median']:.2f} / "
                     f"{s['rp2p_p95']:.2f} %  FNTS MAD {s['fnts_mad']:.2f} deg (max {s['fnts_max']:.2f})")
        print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
