"""Where does the implant stage see an implant? An occlusion map of its pre/post-op logit.

    python tests/bench/bench_implant_occlusion.py --weights PATH [PATH ...] [--data xray3d:val ...] [--n 48] \
        [--patch 16] [--picture frames.png]

The implant stage (``stages: implant:``) decides pre/post-op from the joint alone, in its own frame fixed by the
plateau corners. For each bundle this bench builds that frame from the ground-truth corners (as the training
validation does, so that the phase is all that is measured), prints how many knees of each true phase the logit
calls post-op, and then, over the pre-op knees it calls post-op, greys one square patch at a time (the image's mean)
and prints the mean fall of the logit: a large fall marks where the stage sees the implant that is not there. Rows
and columns are the patch centres in plateau widths from the plateau's centre (x toward the fibula, y distal) on
the left view. ``--picture``: the implant frames of each set's first four pre-op and four post-op knees, one row per
set (as the first bundle builds them). Used for `docs/results/shape-randomisation-ablation.md`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def occlusion_map(net, images: torch.Tensor, patch: int, step: int) -> tuple[list[int], np.ndarray]:
    """Patch corners along one side and the mean fall of the first logit when each patch is greyed."""
    side = images.shape[-1]
    corners = list(range(0, side - patch + 1, step))
    fall = np.zeros((len(corners), len(corners)))
    with torch.no_grad():
        base = net(images).aux[:, 0]
        for i, y in enumerate(corners):
            for j, x in enumerate(corners):
                greyed = images.clone()
                greyed[:, :, y:y + patch, x:x + patch] = images.mean(dim=(2, 3), keepdim=True)
                fall[i, j] = float((base - net(greyed).aux[:, 0]).mean())
    return corners, fall


def main() -> None:
    from model.vocabulary import IMPLANT_STAGE
    from model.weights import load_bundle
    from train.evaluate import resolve_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", required=True, help="bundles with an implant stage")
    ap.add_argument("--data", nargs="+", default=["xray3d:val"], help="evaluation sets (default: xray3d:val)")
    ap.add_argument("--n", type=int, default=48, help="cases per phase of a synthetic set")
    ap.add_argument("--patch", type=int, default=16, help="side of the greyed square, implant-frame pixels")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--picture", help="write the implant frames of each set's first knees to this PNG")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bundles = {path: load_bundle(path) for path in args.weights}  # each read once, for every set
    nets = {path: b.build_networks()[IMPLANT_STAGE].eval() for path, b in bundles.items()}
    rows = []
    for data in args.data:
        samples = list(resolve_data(data, args.n, args.workers, progress=False).samples())
        rows.append(_first_frames(samples, bundles[args.weights[0]].implant_frame))
        for path, bundle in bundles.items():
            print(f"{path} on {data}:")
            _report(nets[path], bundle.implant_frame, samples, args.patch)
    if args.picture:
        import cv2

        cv2.imwrite(args.picture, np.round(255 * np.vstack(rows)).astype(np.uint8))


def _first_frames(samples, spec) -> np.ndarray:
    """The implant frames of the first four knees of each phase side by side, each stretched to [0, 1]."""
    from train.data.stages import implant_batch

    chosen = []
    for phase in dict.fromkeys(s.phase for s in samples):
        chosen += [s for s in samples if s.phase == phase][:4]
    frames = implant_batch(chosen, spec).images[:, 0].numpy()
    return np.hstack([(f - f.min()) / max(float(np.ptp(f)), 1e-6) for f in frames])


def _report(net, spec, samples: list, patch: int) -> None:
    """Print an implant stage's calls per phase and, where it calls pre-op knees post-op, their occlusion map."""
    from model.vocabulary import PREOP
    from train.data.stages import implant_batch

    phases = np.array([s.phase for s in samples])
    images = implant_batch(samples, spec).images
    with torch.no_grad():
        logits = net(images).aux[:, 0].numpy()
    for phase in dict.fromkeys(phases):
        mine = logits[phases == phase]
        print(f"  {phase}: {len(mine)} knees, called post-op {(mine > 0).sum()}, logit median {np.median(mine):+.2f}")
    wrong = np.where((phases == PREOP) & (logits > 0))[0]
    if not len(wrong):
        return
    corners, fall = occlusion_map(net, images[wrong], patch, max(1, patch // 2))
    per_width = spec.width_px / (2 * spec.half_width)
    xs = [(c + patch / 2 - spec.width_px / 2) / per_width for c in corners]
    ys = [(c + patch / 2 - spec.height_px / 2) / per_width for c in corners]
    print(f"  fall of the logit when a {patch}-px patch is greyed, over the {len(wrong)} pre-op knees "
          f"called post-op (rows: y, columns: x, plateau widths from the plateau's centre):")
    print("         " + " ".join(f"{x:+5.2f}" for x in xs))
    for y, row in zip(ys, fall):
        print(f"  {y:+5.2f}  " + " ".join(f"{v:5.1f}" for v in row))


if __name__ == "__main__":
    main()
