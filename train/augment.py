"""Data augmentation with OpenCV.

- Global stage: a random similarity (rotation, scale, shift, optional mirror) of the letterboxed square, with its
  points moved along; a mirror also flips the "right knee" label.
- Local stage: frame jitter, i.e. the reference points that fix the frame are perturbed (scale, rotation, shift)
  before ``model.frames.frame_matrix``, so the local network learns to tolerate global-stage errors.
- Both: intensity changes (gamma, contrast, brightness, blur, noise, cut-out) on the [0, 1] network image, and the
  domain randomisation real departments call for: a random monotone tone curve, local histogram equalisation,
  a window narrow enough to burn bone out to flat white, a smooth gain field (heel effect, scatter), correlated
  texture that grows with brightness, edge enhancement (unsharp masking), grid lines, burned-in text and markers
  anywhere; and, before either stage's input is made, the field
  of view of a tightly collimated knee film (``FieldAug``: a crop or shutters leaving as little as ~0.5 plateau
  widths of each shaft, the plateau up to ~70 % of the image width).
- Both, optionally: shape randomisation (``ElasticAug``), a smooth random displacement of the stage's input with its
  points moved along, so that bones bend, flare and widen in ways neither renderer draws.

Every function takes a ``numpy.random.Generator`` so that a run is reproducible from its seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

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
    curve_p: float = 0.0  # random monotone tone curve (5 knots)
    unsharp_p: float = 0.0  # edge enhancement
    unsharp_amount: tuple[float, float] = (0.3, 1.5)
    unsharp_sigma: tuple[float, float] = (1.0, 6.0)  # pixels of the network input
    grid_p: float = 0.0  # stationary grid lines
    glyph_p: float = 0.0  # white letters or text burned in anywhere
    equalize_p: float = 0.0  # local histogram equalisation (CLAHE), like a detector's multi-scale processing
    equalize_clip: tuple[float, float] = (1.5, 4.0)
    saturate_p: float = 0.0  # a narrow window: everything above an upper quantile is flat white, like metal
    saturate_quantile: tuple[float, float] = (0.8, 0.98)
    shading_p: float = 0.0  # a smooth gain field across the image: heel effect, scatter, uneven processing
    shading_strength: tuple[float, float] = (0.1, 0.5)
    texture_p: float = 0.0  # correlated noise that grows with brightness: trabecular and quantum mottle
    texture_amount: tuple[float, float] = (0.03, 0.15)
    texture_sigma: tuple[float, float] = (0.7, 3.0)  # pixels of the network input


class ElasticAug(_Params):
    """A smooth random displacement field over the whole input (a coarse grid of random offsets, upsampled
    cubically), the points moved with the pixels. Off unless ``p`` is set. At the defaults the field's slope stays
    under about 0.7 (measured on 192 x 288 frames), short of the 1 at which an image would fold over itself and the
    points could no longer follow their pixels; the slope grows with the amplitude times the grid's cells, so a
    setting beyond the defaults' product is refused."""

    p: float = 0.0
    amplitude: tuple[float, float] = (0.01, 0.03)  # largest displacement, fraction of the input's longer side
    cells: tuple[int, int] = (3, 5)  # control grid across the input: fewer cells, larger-scale bends

    @model_validator(mode="after")
    def _never_folds(self) -> ElasticAug:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"elastic p must lie in [0, 1], got {self.p}")
        (low, high), (few, many) = self.amplitude, self.cells
        if not 0.0 <= low <= high or not 2 <= few <= many:
            raise ValueError(f"elastic amplitude needs 0 <= low <= high and cells 2 <= low <= high, got "
                             f"{self.amplitude}, {self.cells}")
        if high * (many - 1) > 0.12 + 1e-9:
            raise ValueError(f"elastic amplitude {high} with {many} cells could fold the image over itself: keep "
                             f"amplitude x (cells - 1) at most 0.12")
        return self


class FieldAug(_Params):
    """A tight field of view around the knee (crop, or shutters painting the outside), drawn in the frame of the
    plateau corners: shafts shown for ``above``/``below`` plateau widths, the plateau ``plateau_fraction`` of the
    field's width."""

    p: float = 0.0
    above: tuple[float, float] = (0.5, 1.5)
    below: tuple[float, float] = (0.5, 1.5)
    plateau_fraction: tuple[float, float] = (0.38, 0.7)
    shutter_p: float = 0.4  # of the tight fields: shutters instead of a crop


class GlobalAug(_Params):
    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.08  # fraction of the side
    mirror_p: float = 0.5
    margin: float = 0.03  # reference points must stay this far (fraction of side) inside the square
    intensity: IntensityAug = IntensityAug()
    field: FieldAug = FieldAug()
    elastic: ElasticAug = ElasticAug()


class FrameJitter(_Params):
    scale: float = 0.10  # +- fraction of the reference length
    rotation_deg: float = 10.0
    shift: float = 0.05  # +- fraction of the reference length, along each frame axis
    intensity: IntensityAug = IntensityAug()
    field: FieldAug = FieldAug()
    elastic: ElasticAug = ElasticAug()


class ImplantAug(FrameJitter):
    """The implant stage's frame: jittered more than a local stage's (it must tolerate a poor global stage), and
    mirrored (the pre/post-op decision must not depend on the side the image was read as)."""

    scale: float = 0.15
    rotation_deg: float = 12.0
    shift: float = 0.12
    mirror_p: float = 0.5


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
    out, moved = maybe_elastic(out, apply_affine(matrix, points), rng, params.elastic)
    return augment_intensity(out, rng, params.intensity), moved, mirrored


def _bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``field`` sampled at ``points`` (N, 2) by bilinear interpolation, the border value beyond the edges."""
    h, w = field.shape
    x = np.clip(points[:, 0], 0.0, w - 1.0)
    y = np.clip(points[:, 1], 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = x - x0, y - y0
    return ((1 - fy) * ((1 - fx) * field[y0, x0] + fx * field[y0, x0 + 1])
            + fy * ((1 - fx) * field[y0 + 1, x0] + fx * field[y0 + 1, x0 + 1]))


def elastic_warp(image: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                 params: ElasticAug) -> tuple[np.ndarray, np.ndarray]:
    """``(image, points)`` bent by a smooth random displacement ``d``: output pixel ``p`` shows input pixel
    ``p + d(p)``, so a point ``q`` moves to the ``p`` that solves ``p + d(p) = q`` (fixed-point iteration, which
    converges because the field's slope stays well under 1)."""
    h, w = image.shape
    cells = int(rng.integers(params.cells[0], params.cells[1] + 1))
    amplitude = _uniform(rng, params.amplitude) * max(h, w)
    dx = _smooth_field(rng, (h, w), cells) * np.float32(amplitude)
    dy = _smooth_field(rng, (h, w), cells) * np.float32(amplitude)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(image, xs + dx, ys + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    target = np.asarray(points, np.float64)
    moved = target.copy()
    for _ in range(30):
        moved = target - np.stack([_bilinear(dx, moved), _bilinear(dy, moved)], axis=1)
    return out, moved


def maybe_elastic(image: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                  params: ElasticAug) -> tuple[np.ndarray, np.ndarray]:
    """:func:`elastic_warp` with probability ``params.p``; draws nothing from ``rng`` when ``p`` is 0, so that
    configurations without it stay reproducible."""
    if params.p and rng.random() < params.p:
        return elastic_warp(image, points, rng, params)
    return image, points


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


def tight_field(image: np.ndarray, points: np.ndarray, reference: np.ndarray, rng: np.random.Generator,
                params: FieldAug) -> tuple[np.ndarray, np.ndarray]:
    """A tight field of view around the knee: ``(image, points)`` cropped (points shifted) or with the outside
    painted over by shutters. ``reference`` = the plateau corners ``[[medial], [lateral]]`` in ``image``."""
    med, lat = np.asarray(reference, np.float64)
    length = float(np.hypot(*(lat - med)))
    if length < 1e-6:
        return image, points
    x = (lat - med) / length
    y = np.array([-x[1], x[0]])
    half = 0.5 * length / _uniform(rng, params.plateau_fraction)
    shift = float(rng.uniform(-0.15, 0.15)) * half
    top, bottom = _uniform(rng, params.above) * length, _uniform(rng, params.below) * length
    centre = (med + lat) / 2 + shift * x
    corners = np.array([centre + a * half * x + b * y for a in (-1, 1) for b in (-top, bottom)])
    h, w = image.shape
    if rng.random() < params.shutter_p:
        quad = corners[[0, 1, 3, 2]]
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(quad * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
        fill = float(rng.choice([0.0, 1.0, rng.uniform(0.1, 0.6)]))
        out = np.where(mask > 0, image, np.float32(fill)).astype(np.float32)
        return out, points
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return image, points
    return np.ascontiguousarray(image[y0:y1, x0:x1]), np.asarray(points, np.float64) - [x0, y0]


def _tone_curve(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    knots = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 0.95, 3)), [1.0]])
    return np.interp(out, np.linspace(0.0, 1.0, 5), knots).astype(np.float32)


def _glyphs(out: np.ndarray, rng: np.random.Generator) -> None:
    h, w = out.shape
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        text = str(rng.choice(["L", "R", "AP", "PA", "WB", "LT", "RT", "STANDING", "12", "KNEE"]))
        scale = float(rng.uniform(0.25, 1.2)) * h / 256
        org = (int(rng.integers(0, max(1, w - 20))), int(rng.integers(10, max(11, h))))
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(round(2 * scale))),
                    cv2.LINE_AA)
    np.maximum(out, canvas.astype(np.float32) / 255.0, out=out)


def _equalize(out: np.ndarray, rng: np.random.Generator, clip: tuple[float, float]) -> np.ndarray:
    """CLAHE on a 16-bit copy with a random tile grid, blended with the input."""
    tiles = int(rng.integers(3, 11))
    clahe = cv2.createCLAHE(clipLimit=_uniform(rng, clip), tileGridSize=(tiles, tiles))
    eq = clahe.apply(np.round(out * 65535).astype(np.uint16)).astype(np.float32) / 65535
    alpha = float(rng.uniform(0.5, 1.0))
    return (alpha * eq + (1 - alpha) * out).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1]: a ``cells`` x ``cells`` grid of uniform values, upsampled cubically."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def _texture(out: np.ndarray, rng: np.random.Generator, params: IntensityAug) -> np.ndarray:
    """Add smooth correlated noise of unit spread, scaled by the brightness: bone gets grain, background little."""
    noise = cv2.GaussianBlur(rng.standard_normal(out.shape).astype(np.float32), (0, 0),
                             _uniform(rng, params.texture_sigma))
    noise *= 1.0 / max(float(noise.std()), 1e-6)
    return out + _uniform(rng, params.texture_amount) * out * noise


def augment_intensity(image: np.ndarray, rng: np.random.Generator, params: IntensityAug) -> np.ndarray:
    """Random gamma, contrast, brightness, blur, noise and cut-out on a float image in [0, 1]; optionally a tone
    curve, local equalisation, a saturating window, a gain field, texture, edge enhancement, grid lines and
    burned-in glyphs."""
    out = np.clip(image, 0.0, 1.0).astype(np.float32, copy=True)
    if params.curve_p and rng.random() < params.curve_p:
        out = _tone_curve(out, rng)
    if params.equalize_p and rng.random() < params.equalize_p:
        out = _equalize(out, rng, params.equalize_clip)
    out = np.power(out, _uniform(rng, params.gamma), dtype=np.float32)
    out = out * _uniform(rng, params.contrast) + float(rng.uniform(-params.brightness, params.brightness))
    if params.saturate_p and rng.random() < params.saturate_p:
        lit = out[::4, ::4]
        lit = lit[lit > 0.05]  # the quantile of what was exposed, not of the collimated background
        if lit.size:
            out = out / max(float(np.quantile(lit, _uniform(rng, params.saturate_quantile))), 1e-3)
    if params.shading_p and rng.random() < params.shading_p:
        field = _smooth_field(rng, out.shape, int(rng.integers(2, 5)))
        out = out * (1.0 + _uniform(rng, params.shading_strength) * field)
    if params.texture_p and rng.random() < params.texture_p:
        out = _texture(out, rng, params)
    if rng.random() < params.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), _uniform(rng, params.blur_sigma))
    if params.unsharp_p and rng.random() < params.unsharp_p:
        amount = _uniform(rng, params.unsharp_amount)
        out = out + amount * (out - cv2.GaussianBlur(out, (0, 0), _uniform(rng, params.unsharp_sigma)))
    if params.grid_p and rng.random() < params.grid_p:
        n = out.shape[1] if rng.random() < 0.5 else out.shape[0]
        stripes = (float(rng.uniform(0.01, 0.05)) * np.sin(2 * np.pi * np.arange(n) / rng.uniform(2.1, 6.0))
                   ).astype(np.float32)
        out = out + (stripes[None, :] if n == out.shape[1] else stripes[:, None])
    if rng.random() < params.noise_p:
        out = out + rng.normal(0.0, _uniform(rng, params.noise_std), size=out.shape).astype(np.float32)
    if params.cutout_max > 0 and rng.random() < params.cutout_p:
        h, w = out.shape
        for _ in range(int(rng.integers(1, params.cutout_max + 1))):
            ch = int(_uniform(rng, params.cutout_size) * h)
            cw = int(_uniform(rng, params.cutout_size) * w)
            y, x = int(rng.integers(0, max(1, h - ch))), int(rng.integers(0, max(1, w - cw)))
            out[y:y + ch, x:x + cw] = float(rng.random())
    out = np.clip(out, 0.0, 1.0)
    if params.glyph_p and rng.random() < params.glyph_p:
        _glyphs(out, rng)
    return out
