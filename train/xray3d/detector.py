"""How the 3D knee is exposed and the image processed: geometry of the field, physics of the detector, display.

``sample_exposure`` draws every acquisition parameter, with domain randomisation over what real departments
produce: the field from tight knee-only collimation (plateau up to ~60 % of the image width, shafts visible for
~0.6 plateau widths) to long cassettes; the detector pixel size; source distance and central-ray offset; dose,
scatter, heel effect, blur; and the processing a modality applies before display (logarithm, unsharp masking,
dynamic-range compression, a random monotone tone curve), grid lines, lead side markers and burned-in text
anywhere, collimator shutters, both photometric interpretations and 10-16 stored bits.

``expose`` turns line integrals (per mm of tissue in excess of soft tissue, plus the soft tissue computed here
from the limb's projected axis) into stored pixel values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DETECTOR_SPACINGS_MM = (0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.168, 0.175, 0.2)
MAX_SIDE_PX = 3500
FOV_KINDS = ("tight", "standard", "long")


@dataclass(frozen=True)
class Exposure:
    laterality: str
    modality: str  # "DX" | "CR"
    fov: str  # "tight" | "standard" | "long"
    plateau_fraction: float  # plateau width over image width (before rotation)
    shaft_above: float  # plateau widths of femur shown above the joint
    shaft_below: float
    centre_shift: tuple[float, float]  # knee position jitter, fractions of the image size
    detector_spacing: float
    sid: float
    ray_offset: tuple[float, float]  # central ray offset from the knee, mm
    contrast: float  # attenuation scale (beam energy)
    photons: float  # per mm^2 at the detector, unattenuated
    scatter: float  # scatter-to-primary ratio
    scatter_sigma_mm: float
    heel: float
    blur_mm: float
    grid_lines: float  # amplitude, 0 = none
    grid_period_px: float
    grid_vertical: bool
    unsharp: float
    unsharp_mm: float
    equalisation: float
    equalisation_mm: float
    window: tuple[float, float]  # percentiles of the exposed field mapped to the display range
    curve: tuple[float, ...]  # monotone tone curve: values at 0, 1/4, 1/2, 3/4, 1
    gamma: float
    collimation: tuple[float, float, float, float] | None  # mm inside each edge (left, top, right, bottom)
    collimation_angle: float
    shutter_fill: float  # displayed value outside the field, MONOCHROME2 sense (-1: raw, as detected)
    marker: str | None
    marker_pos: tuple[float, float]  # fractions of the image
    marker_mm: float
    text: str | None
    text_pos: tuple[float, float]
    texture: float  # relative amplitude of trabecular texture on bone
    texture_mm: float  # its grain
    bits_stored: int
    photometric: str


def sample_exposure(rng: np.random.Generator, laterality: str, hard: bool = False) -> Exposure:
    u = rng.uniform
    fov = str(rng.choice(FOV_KINDS, p=(0.35, 0.45, 0.2)))
    if fov == "tight":
        frac, above, below = u(0.42, 0.62), u(0.55, 1.15), u(0.55, 1.15)
    elif fov == "standard":
        frac, above, below = u(0.26, 0.45), u(1.0, 2.0), u(1.0, 2.0)
    else:
        frac, above, below = u(0.19, 0.3), u(1.8, 2.7), u(1.8, 2.7)
    modality = "CR" if rng.random() < 0.3 else "DX"
    collimate = rng.random() < (0.8 if hard else 0.55)
    collimation = (u(0, 25), u(0, 25), u(0, 25), u(0, 25)) if collimate else None
    curve = np.sort(u(0.0, 1.0, 3))
    curve = tuple(float(v) for v in np.concatenate([[0.0], 0.15 + 0.7 * curve, [1.0]]))
    if rng.random() < 0.5:  # plain curve half of the time
        curve = (0.0, 0.25, 0.5, 0.75, 1.0)
    texts = ("AP", "STANDING", "WB", "SUPINE", "PORTABLE", "R", "L", "KNEE AP", "POST OP", "2025-01-01")
    return Exposure(
        laterality=laterality, modality=modality, fov=fov, plateau_fraction=frac, shaft_above=above,
        shaft_below=below, centre_shift=(u(-0.08, 0.08), u(-0.06, 0.06)),
        detector_spacing=float(rng.choice(DETECTOR_SPACINGS_MM)), sid=u(950.0, 1250.0),
        ray_offset=(u(-30.0, 30.0), u(-40.0, 40.0)), contrast=u(0.8, 1.2),
        photons=float(np.exp(u(math.log(3e3), math.log(2e4)) if hard else u(math.log(1.5e4), math.log(3e5)))),
        scatter=u(0.1, 0.9), scatter_sigma_mm=u(15.0, 60.0), heel=u(-0.25, 0.25),
        blur_mm=u(0.15, 0.5) if hard else u(0.05, 0.3),
        grid_lines=u(0.01, 0.05) if rng.random() < 0.15 else 0.0, grid_period_px=u(2.1, 6.0),
        grid_vertical=bool(rng.random() < 0.5),
        unsharp=u(0.0, 1.6) if rng.random() < 0.7 else 0.0, unsharp_mm=u(0.8, 6.0),
        equalisation=u(0.0, 0.8), equalisation_mm=u(10.0, 50.0),
        window=(u(0.0, 4.0), u(96.0, 100.0)), curve=curve, gamma=u(0.6, 1.6),
        collimation=collimation, collimation_angle=u(-3.0, 3.0),
        shutter_fill=float(rng.choice([-1.0, 0.0, 1.0, u(0.2, 0.6)], p=(0.4, 0.25, 0.25, 0.1))),
        marker=(laterality if rng.random() < 0.9 else ("R" if laterality == "L" else "L")) if rng.random() < 0.8
        else None,
        marker_pos=(u(0.03, 0.97), u(0.03, 0.97)), marker_mm=u(8.0, 16.0),
        text=str(rng.choice(texts)) if rng.random() < 0.35 else None, text_pos=(u(0.02, 0.8), u(0.03, 0.97)),
        texture=u(0.0, 0.25), texture_mm=u(0.4, 1.5),
        bits_stored=int(rng.choice([10, 12, 12, 14, 15, 16])),
        photometric="MONOCHROME1" if rng.random() < (0.6 if modality == "CR" else 0.15) else "MONOCHROME2",
    )


def bone_texture(shape: tuple[int, int], exp: Exposure, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative trabecular texture for the bones' line integral: band-limited noise around 1."""
    h, w = shape
    grain = max(exp.texture_mm / spacing, 0.7)
    small = rng.standard_normal((max(int(h / grain), 2), max(int(w / grain), 2))).astype(np.float32)
    noise = cv2.resize(cv2.GaussianBlur(small, (0, 0), 0.8), (w, h), interpolation=cv2.INTER_CUBIC)
    return 1.0 + exp.texture * noise / max(float(noise.std()), 1e-6)


def field_mask(shape: tuple[int, int], exp: Exposure, spacing: float) -> np.ndarray:
    """The exposed (collimated) field as a float mask in [0, 1], with a penumbra of about a millimetre."""
    h, w = shape
    if exp.collimation is None:
        return np.ones(shape, np.float32)
    left, top, right, bottom = (v / spacing for v in exp.collimation)
    rect = ((left + (w - right)) / 2, (top + (h - bottom)) / 2), (max(w - left - right, 8), max(h - top - bottom, 8)), \
        exp.collimation_angle
    box = cv2.boxPoints(rect)
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(mask, (0, 0), max(0.6 / spacing, 0.5))


def soft_tissue(shape: tuple[int, int], axis_px: np.ndarray, radii_mm: np.ndarray, spacing: float,
                depth_ratio: float, fat_fraction: float, mu_soft: float, mu_fat: float) -> np.ndarray:
    """Line integral through the limb's soft tissue: an elliptic cylinder around the projected limb axis (a polyline
    with one radius per vertex), with a subcutaneous fat layer."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    best_d = np.full(shape, np.inf, np.float32)
    best_r = np.zeros(shape, np.float32)
    for i in range(len(axis_px) - 1):
        a, b = axis_px[i].astype(np.float32), axis_px[i + 1].astype(np.float32)
        d = b - a
        t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / float(d @ d), 0.0, 1.0)
        dist = np.hypot(xx - (a[0] + t * d[0]), yy - (a[1] + t * d[1])) * spacing
        r = radii_mm[i] + t * (radii_mm[i + 1] - radii_mm[i])
        closer = dist < best_d
        best_d = np.where(closer, dist, best_d)
        best_r = np.where(closer, r, best_r)

    def chord(radius: np.ndarray) -> np.ndarray:
        return 2.0 * depth_ratio * radius * np.sqrt(np.clip(1.0 - (best_d / radius) ** 2, 0.0, None))

    inner = best_r * (1.0 - fat_fraction)
    return (mu_fat * chord(best_r) + (mu_soft - mu_fat) * chord(inner)).astype(np.float32)


def _tone(v: np.ndarray, curve: tuple[float, ...], gamma: float) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, len(curve))
    return np.power(np.interp(np.clip(v, 0.0, 1.0), xs, curve), gamma).astype(np.float32)


def _draw_marker(att: np.ndarray, letter: str, pos: tuple[float, float], height_px: float) -> None:
    """A lead letter: strong attenuation in the shape of the glyph, before the detector."""
    h, w = att.shape
    scale = max(height_px / 22.0, 0.3)
    thickness = max(int(round(scale * 2.5)), 1)
    org = (int(pos[0] * (w - height_px)), int(pos[1] * (h - height_px) + height_px))
    glyph = np.zeros(att.shape, np.uint8)
    cv2.putText(glyph, letter, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    att += (6.0 / 255.0) * glyph.astype(np.float32)


def expose(line_integral: np.ndarray, exp: Exposure, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Stored values (uint16) from the total line integral at ``spacing`` mm per pixel."""
    h, w = line_integral.shape
    att = line_integral * np.float32(exp.contrast)
    if exp.marker:
        _draw_marker(att, exp.marker, exp.marker_pos, exp.marker_mm / spacing)
    field = field_mask((h, w), exp, spacing)
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    photons = exp.photons * spacing**2
    primary = photons * np.exp(-att) * (1.0 + exp.heel * rows)
    small = cv2.resize(primary, (max(w // 8, 1), max(h // 8, 1)), interpolation=cv2.INTER_AREA)
    sigma = exp.scatter_sigma_mm / (spacing * 8)
    scatter = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma), (w, h), interpolation=cv2.INTER_LINEAR)
    detected = (primary * field + exp.scatter * scatter * (0.15 + 0.85 * field)).astype(np.float32)
    if exp.grid_lines:
        coord = np.arange(w if exp.grid_vertical else h, dtype=np.float32)
        stripes = 1.0 + exp.grid_lines * np.sin(2 * np.pi * coord / exp.grid_period_px)
        detected *= stripes[None, :] if exp.grid_vertical else stripes[:, None]
    noisy = detected + rng.standard_normal(detected.shape, dtype=np.float32) * np.sqrt(np.maximum(detected, 1.0))
    blur = exp.blur_mm / spacing
    if blur > 0.3:
        noisy = cv2.GaussianBlur(noisy, (0, 0), blur)
    raw = -np.log(np.maximum(noisy, 0.5) / photons)  # bone and metal high
    if exp.unsharp:
        raw = raw + exp.unsharp * (raw - cv2.GaussianBlur(raw, (0, 0), exp.unsharp_mm / spacing))
    if exp.equalisation:
        k = max(exp.equalisation_mm / spacing / 4, 1.0)
        small = cv2.resize(raw, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
        low = cv2.resize(cv2.GaussianBlur(small, (0, 0), k), (w, h), interpolation=cv2.INTER_LINEAR)
        raw = raw - exp.equalisation * (low - float(np.median(low)))
    inside = raw[field > 0.5]
    sample = inside[:: max(1, inside.size // 20000)] if inside.size else raw.ravel()
    lo, hi = np.percentile(sample, exp.window)
    v = (raw - lo) / max(float(hi - lo), 1e-3)
    v = _tone(v, exp.curve, exp.gamma)
    if exp.shutter_fill >= 0:
        v = v * field + np.float32(exp.shutter_fill) * (1.0 - field)
    if exp.text:  # burned in after processing, at full brightness
        glyph = np.zeros((h, w), np.uint8)
        cv2.putText(glyph, exp.text, (int(exp.text_pos[0] * w), int(exp.text_pos[1] * h)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(h / 900.0, 0.4), 255, max(h // 500, 1), cv2.LINE_AA)
        v = np.maximum(v, glyph.astype(np.float32) / 255.0)
    top = 2**exp.bits_stored - 1
    stored = np.round(np.clip(v, 0.0, 1.0) * top)
    if exp.photometric == "MONOCHROME1":
        stored = top - stored
    return stored.astype(np.uint16)
