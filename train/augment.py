"""Data augmentation with OpenCV.

- Global stage: a random similarity (rotation, scale, shift, optional mirror) of the letterboxed square, with its
  points moved along; a mirror also flips the "right knee" label.
- Local stage: frame jitter, i.e. the reference points that fix the frame are perturbed (scale, rotation, shift)
  before ``model.frames.frame_matrix``, so the local network learns to tolerate global-stage errors.
- Both: intensity changes (gamma, contrast, brightness, blur, noise, cut-out) on the [0, 1] network image.

Every function takes a ``numpy.random.Generator`` so that a run is reproducible from its seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from model.frames import apply_affine


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntensityAug(_Params):
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: float = 0.08  # +- added after contrast
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # pixels of the network input
    noise_p: float = 0.5
    noise_std: tuple[float, float] = (0.005, 0.04)
    cutout_p: float = 0.2
    cutout_max: int = 2  # rectangles
    cutout_size: tuple[float, float] = (0.04, 0.15)  # fraction of the image side


class GlobalAug(_Params):
    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.08  # fraction of the side
    mirror_p: float = 0.5
    margin: float = 0.03  # reference points must stay this far (fraction of side) inside the square
    intensity: IntensityAug = IntensityAug()


class FrameJitter(_Params):
    scale: float = 0.10  # +- fraction of the reference length
    rotation_deg: float = 10.0
    shift: float = 0.05  # +- fraction of the reference length, along each frame axis
    intensity: IntensityAug = IntensityAug()


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def similarity_about(centre: np.ndarray, angle_deg: float, scale: float, shift: np.ndarray) -> np.ndarray:
    """2x3 matrix: rotate by ``angle_deg`` (counter-clockwise on screen) and scale about ``centre``, then shift."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, scale)
    m[:, 2] += shift
    return m


def augment_global(
    square: np.ndarray, points: np.ndarray, rng: np.random.Generator, params: GlobalAug
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Augment a letterboxed square and its points ``(K, 2)``; returns ``(image, points, mirrored)``.

    When mirrored, the points keep their (anatomical) order: the caller flips the laterality label.
    """
    size = square.shape[0]
    mirrored = bool(rng.random() < params.mirror_p)
    base = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) if mirrored else np.array([[1.0, 0, 0], [0, 1.0, 0]])
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    lo, hi = params.margin * size, (1 - params.margin) * size - 1
    matrix = base
    for _ in range(8):
        geo = similarity_about(
            centre,
            float(rng.uniform(-params.rotation_deg, params.rotation_deg)),
            math.exp(rng.uniform(math.log(params.scale[0]), math.log(params.scale[1]))),
            rng.uniform(-params.shift, params.shift, size=2) * size,
        )
        candidate = np.vstack([geo, [0, 0, 1]]) @ np.vstack([base, [0, 0, 1]])
        moved = apply_affine(candidate[:2], points)
        if np.all((moved >= lo) & (moved <= hi)):
            matrix = candidate[:2]
            break
    out = cv2.warpAffine(square, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0.0)
    return augment_intensity(out, rng, params.intensity), apply_affine(matrix, points), mirrored


def jitter_reference(reference: np.ndarray, rng: np.random.Generator, params: FrameJitter) -> np.ndarray:
    """Perturb ``[[medial], [lateral]]`` reference points: scale and rotate about their midpoint, then shift."""
    ref = np.asarray(reference, dtype=np.float64)
    centre = ref.mean(axis=0)
    half = (ref[1] - ref[0]) / 2
    length = 2 * float(np.hypot(*half))
    s = 1.0 + rng.uniform(-params.scale, params.scale)
    a = math.radians(rng.uniform(-params.rotation_deg, params.rotation_deg))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    u = half / max(length / 2, 1e-9)
    v = np.array([-u[1], u[0]])
    shift = length * (rng.uniform(-params.shift, params.shift) * u + rng.uniform(-params.shift, params.shift) * v)
    new_half = s * (rot @ half)
    new_centre = centre + shift
    return np.vstack([new_centre - new_half, new_centre + new_half])


def augment_intensity(image: np.ndarray, rng: np.random.Generator, params: IntensityAug) -> np.ndarray:
    """Random gamma, contrast, brightness, blur, noise and cut-out on a float image in [0, 1]."""
    out = np.clip(image, 0.0, 1.0).astype(np.float32, copy=True)
    out = np.power(out, _uniform(rng, params.gamma), dtype=np.float32)
    out = out * _uniform(rng, params.contrast) + float(rng.uniform(-params.brightness, params.brightness))
    if rng.random() < params.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), _uniform(rng, params.blur_sigma))
    if rng.random() < params.noise_p:
        out = out + rng.normal(0.0, _uniform(rng, params.noise_std), size=out.shape).astype(np.float32)
    if params.cutout_max > 0 and rng.random() < params.cutout_p:
        h, w = out.shape
        for _ in range(int(rng.integers(1, params.cutout_max + 1))):
            ch = int(_uniform(rng, params.cutout_size) * h)
            cw = int(_uniform(rng, params.cutout_size) * w)
            y, x = int(rng.integers(0, max(1, h - ch))), int(rng.integers(0, max(1, w - cw)))
            out[y:y + ch, x:x + cw] = float(rng.random())
    return np.clip(out, 0.0, 1.0)
