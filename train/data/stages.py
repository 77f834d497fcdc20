"""Network inputs and targets for each stage, built with exactly the functions inference uses
(``model.preprocess.letterbox``/``warp_to_frame``/``to_network_input``, ``model.frames.frame_matrix``).

- Global: the whole image as acquired, letterboxed; targets are the two reference points (medial, lateral)
  in square pixels and the auxiliary labels ``[right knee as acquired, implant present]``.
- Local: right knees mirrored to left, the frame fixed by the ground-truth reference points (jittered in
  training), targets are every landmark of the phase's scheme in frame pixels, with a mask for points that
  fall outside the frame.
- Implant: like a local stage, in the implant stage's own frame around the joint, jittered more and mirrored half the
  time; targets are the two reference points and the auxiliary label ``[implant present]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.frames import FrameSpec, apply_affine, frame_matrix
from model.preprocess import letterbox, to_network_input, warp_to_frame
from model.vocabulary import PHASES
from train.augment import (
    FieldAug,
    FrameJitter,
    GlobalAug,
    ImplantAug,
    augment_global,
    augment_intensity,
    jitter_reference,
    maybe_elastic,
    tight_field,
)
from train.data.sample import KneeSample


@dataclass
class Batch:
    images: torch.Tensor  # (B, 1, H, W) network input
    coords: torch.Tensor  # (B, N, 2) input pixels
    weight: torch.Tensor  # (B, N) 1 = supervise this point
    aux: torch.Tensor | None = None  # (B, n_aux) labels of the global or implant stage

    def to(self, device: torch.device) -> Batch:
        return Batch(self.images.to(device), self.coords.to(device), self.weight.to(device),
                     None if self.aux is None else self.aux.to(device))


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return ((points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1))


def global_example(sample: KneeSample, size: int, rng: np.random.Generator | None,
                   params: GlobalAug | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(square image in [0, 1], reference points (2, 2) in square px, aux labels (2,))``; no augmentation
    when ``rng`` or ``params`` is None."""
    image, reference = sample.image, sample.reference
    if rng is not None and params is not None:
        image, reference = _field(image, reference, reference, rng, params.field)
    square, to_square = letterbox(image, size)
    points = apply_affine(to_square, reference)
    mirrored = False
    if rng is not None and params is not None:
        square, points, mirrored = augment_global(square, points, rng, params)
    aux = np.array([float(sample.is_right != mirrored), float(PHASES[sample.phase].has_implants)], dtype=np.float32)
    return square, points, aux


def local_example(sample: KneeSample, spec: FrameSpec, rng: np.random.Generator | None,
                  params: FrameJitter | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame image in [0, 1], landmarks (N, 2) in frame px, the 2x3 image->frame matrix)`` for the left view
    (an elastic bend, when drawn, moves the frame's pixels and landmarks after that matrix)."""
    image, points = sample.left_view()
    reference = points[list(sample.scheme.roles["reference"])]
    if rng is not None and params is not None:
        image, points = _field(image, points, reference, rng, params.field)
        reference = points[list(sample.scheme.roles["reference"])]
        reference = jitter_reference(reference, rng, params)
    matrix = frame_matrix(reference, spec)
    frame = warp_to_frame(image, matrix, spec)
    points = apply_affine(matrix, points)
    if rng is not None and params is not None:
        frame, points = maybe_elastic(frame, points, rng, params.elastic)
        frame = augment_intensity(frame, rng, params.intensity)
    return frame, points, matrix


def implant_example(sample: KneeSample, spec: FrameSpec, rng: np.random.Generator | None,
                    params: ImplantAug | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame image, the two reference points (2, 2) in frame px, [implant present])`` in the implant frame."""
    frame, points, _ = local_example(sample, spec, rng, params)
    points = points[list(sample.scheme.roles["reference"])]
    if rng is not None and params is not None and rng.random() < params.mirror_p:
        frame = np.ascontiguousarray(frame[:, ::-1])
        points = points.copy()
        points[:, 0] = (spec.width_px - 1) - points[:, 0]
    return frame, points, np.array([float(PHASES[sample.phase].has_implants)], dtype=np.float32)


def _field(image: np.ndarray, points: np.ndarray, reference: np.ndarray, rng: np.random.Generator,
           params: FieldAug) -> tuple[np.ndarray, np.ndarray]:
    if params.p and rng.random() < params.p:
        return tight_field(image, points, reference, rng, params)
    return image, points


def _stack(images: list[np.ndarray], coords: list[np.ndarray], weights: list[np.ndarray],
           aux: list[np.ndarray] | None) -> Batch:
    return Batch(
        images=torch.from_numpy(np.stack([to_network_input(im) for im in images])[:, None]),
        coords=torch.from_numpy(np.stack(coords).astype(np.float32)),
        weight=torch.from_numpy(np.stack(weights).astype(np.float32)),
        aux=None if aux is None else torch.from_numpy(np.stack(aux)),
    )


def _labelled_batch(examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], width: int, height: int) -> Batch:
    images, coords, aux = zip(*examples)
    return _stack(list(images), list(coords), [_inside(p, width, height).astype(np.float32) for p in coords],
                  list(aux))


def global_batch(samples: Sequence[KneeSample], size: int, rng: np.random.Generator | None = None,
                 params: GlobalAug | None = None) -> Batch:
    return _labelled_batch([global_example(s, size, rng, params) for s in samples], size, size)


def implant_batch(samples: Sequence[KneeSample], spec: FrameSpec, rng: np.random.Generator | None = None,
                  params: ImplantAug | None = None) -> Batch:
    return _labelled_batch([implant_example(s, spec, rng, params) for s in samples], spec.width_px, spec.height_px)


def local_batch(samples: Sequence[KneeSample], spec: FrameSpec, rng: np.random.Generator | None = None,
                params: FrameJitter | None = None) -> Batch:
    images, coords, weights = [], [], []
    for s in samples:
        frame, pts, _ = local_example(s, spec, rng, params)
        weight = _inside(pts, spec.width_px, spec.height_px).astype(np.float32)
        weight[list(s.unseen)] = 0.0  # an estimate beyond the image is not a label
        images.append(frame)
        coords.append(pts)
        weights.append(weight)
    return _stack(images, coords, weights, None)
