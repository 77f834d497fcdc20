"""How the synthetic knee is imaged: detector, field of view, positioning, exposure, processing, storage.

Everything that is not anatomy, sampled per case: pixel spacing and image size, in-plane rotation and
position, collimation, side marker, dose (quantum noise), blur, heel effect, display processing, bits
stored and photometric interpretation. ``hard=True`` gives the robustness set of the issue: rotation up to
25 deg, shafts cut to about 5 cm by the collimator, heavy noise, mostly MONOCHROME1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTOR_SPACINGS_MM = (0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.168, 0.175, 0.2)
MIN_PX, MAX_PX = 1500, 3000


@dataclass(frozen=True)
class Collimation:
    """Exposed field in the acquired image, in mm from the image edges, turned by ``angle_deg``."""

    left: float
    top: float
    right: float
    bottom: float
    angle_deg: float
    fill: float  # displayed value outside the field, 0 (black) .. 1 (white), MONOCHROME2 sense


@dataclass(frozen=True)
class Acquisition:
    laterality: str  # "L" | "R": the knee as acquired
    modality: str  # "DX" | "CR"
    spacing_mm: float  # detector pixel spacing
    width_mm: float  # image extent at the detector spacing
    height_mm: float
    rotation_deg: float  # in-plane rotation of the (left-knee) anatomy, clockwise on screen
    centre: tuple[float, float]  # where the knee origin lies, as fractions of width and height
    collimation: Collimation | None
    marker: str | None  # lead letter, "L" | "R", or None
    marker_corner: int  # 0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left
    marker_height_mm: float
    dose: float  # photons per mm^2 at the detector without attenuation
    blur_mm: float  # detector and focal-spot blur (Gaussian sigma)
    heel: float  # attenuation-like ramp from top to bottom (anode heel effect)
    equalisation: float  # strength of the large-scale dynamic range compression
    window_low: float  # display window: lower end as a fraction of the air-to-brightest-bone range
    window_high: float  # upper end: brightest bone + (window_high - 1) of that range
    gamma: float
    texture_amplitude: float
    texture_scale_mm: float
    bits_stored: int
    photometric: str  # "MONOCHROME1" | "MONOCHROME2"

    def image_shape(self, spacing_mm: float) -> tuple[int, int]:
        """(rows, columns) of the image rendered at ``spacing_mm``."""
        return (max(1, round(self.height_mm / spacing_mm)), max(1, round(self.width_mm / spacing_mm)))


def _collimation(rng: np.random.Generator, hard: bool, width: float, height: float,
                 centre: tuple[float, float]) -> Collimation | None:
    u = rng.uniform
    if not hard and rng.random() < 0.4:
        return None
    fill = 0.0 if rng.random() < 0.6 else (1.0 if rng.random() < 0.6 else u(0.2, 0.5))
    top, bottom = u(0.0, 30.0), u(0.0, 30.0)
    if hard:  # shafts cut to about 5 cm beyond the joint
        top = max(0.0, centre[1] * height - u(50.0, 60.0))
        bottom = max(0.0, (1.0 - centre[1]) * height - u(50.0, 60.0))
    return Collimation(u(0.0, 40.0), top, u(0.0, 40.0), bottom, u(-2.0, 2.0), fill)


def sample_acquisition(rng: np.random.Generator, hard: bool = False, laterality: str | None = None) -> Acquisition:
    u = rng.uniform
    drawn = "L" if rng.random() < 0.5 else "R"  # drawn even when fixed: the rest stays the same
    lat = laterality or drawn
    if lat not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {lat!r}")
    modality = "CR" if rng.random() < 0.3 else "DX"
    spacing = float(rng.choice(DETECTOR_SPACINGS_MM))
    rows = int(np.clip(round(u(220.0, 340.0) / spacing), MIN_PX, MAX_PX))
    cols = int(np.clip(round(rows * u(0.7, 0.95)), MIN_PX, MAX_PX))
    width, height = cols * spacing, rows * spacing
    centre = (u(0.4, 0.6), u(0.42, 0.58))
    if hard:
        rotation = u(-25.0, 25.0)
    else:
        rotation = float(np.clip(rng.normal(0.0, 5.0), -15, 15)) if rng.random() < 0.8 else u(-15.0, 15.0)
    p_mono1 = (0.6 if modality == "CR" else 0.1) if not hard else 0.7
    return Acquisition(
        laterality=lat,
        modality=modality,
        spacing_mm=spacing,
        width_mm=width,
        height_mm=height,
        rotation_deg=rotation,
        centre=centre,
        collimation=_collimation(rng, hard, width, height, centre),
        marker=lat if rng.random() < 0.85 else None,
        marker_corner=int(rng.integers(4)),
        marker_height_mm=u(8.0, 14.0),
        dose=float(np.exp(u(np.log(4e3), np.log(2e4)) if hard else u(np.log(3e4), np.log(3e5)))),
        blur_mm=u(0.15, 0.45) if hard else u(0.06, 0.22),
        heel=u(-0.15, 0.15),
        equalisation=u(0.0, 0.6),
        window_low=u(0.0, 0.4),
        window_high=u(1.0, 1.15),
        gamma=u(0.8, 1.25),
        texture_amplitude=u(0.03, 0.06),
        texture_scale_mm=u(0.35, 0.6),
        bits_stored=int(rng.choice([10, 12, 12, 12, 14, 15, 16])),
        photometric="MONOCHROME1" if rng.random() < p_mono1 else "MONOCHROME2",
    )
