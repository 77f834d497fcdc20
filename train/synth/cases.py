"""Synthetic cases: sample every parameter of one AP knee radiograph, and render it with exact ground truth.

``sample_case`` draws a ``SynthCase`` (anatomy + acquisition, reproducible from its seed alone);
``render_case`` turns it into a ``SynthImage``: stored pixel values as acquired (right knees shown as
right knees), the scheme's landmarks in that image's pixels ``[column, row]``, and the ground-truth aTFA
computed from those landmarks with ``model.alignment.compute_alignment`` (exact by construction).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model.alignment import compute_alignment
from model.scheme import load_scheme
from model.vocabulary import PHASE_NAMES
from train.synth.acquisition import Acquisition, sample_acquisition
from train.synth.anatomy import (
    KneeAnatomy, sample_anatomy, vary_implant_design, vary_native_notch, vary_native_plates,
)
from train.synth.landmarks import scheme_points
from train.synth.render import render
from train.synth.shapes import build_shapes

GENERATOR_VERSION = "1.0"
DESIGN_STREAM = 1  # the implant designs' own random stream: np.random.default_rng([seed, DESIGN_STREAM])
PLATES_STREAM = 2  # the dense native plates' own stream
NOTCH_STREAM = 3  # the filled native notch's own stream


@dataclass(frozen=True)
class SynthCase:
    """Every sampled parameter of one synthetic radiograph."""

    seed: int
    phase: str
    hard: bool
    anatomy: KneeAnatomy
    acquisition: Acquisition

    @property
    def laterality(self) -> str:
        return self.acquisition.laterality

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SynthImage:
    image: np.ndarray  # (rows, columns) uint16 stored values
    bits_stored: int
    photometric: str  # "MONOCHROME1" | "MONOCHROME2"
    pixel_spacing_mm: float
    laterality: str  # "L" | "R"
    phase: str  # one of model.vocabulary.PHASE_NAMES
    scheme_id: str
    landmarks: np.ndarray  # (N, 2) float64, [column, row] in ``image``
    visible: np.ndarray  # (N,) bool: inside the image and the exposed (collimated) field
    atfa_fts_deg: float
    atfa_fnts_deg: float
    case: SynthCase


def _seed_of(rng_or_seed: np.random.Generator | int) -> int:
    if isinstance(rng_or_seed, np.random.Generator):
        return int(rng_or_seed.integers(0, 2**63 - 1))
    return int(rng_or_seed)


def sample_case(rng_or_seed: np.random.Generator | int, phase: str | None = None, hard: bool = False, *,
                atfa_deg: float | None = None, laterality: str | None = None,
                implant_designs: bool = False, dense_plates: bool = False,
                filled_notch: bool = False) -> SynthCase:
    """Sample one case. ``phase=None`` draws pre-op or post-op at even odds; ``atfa_deg`` and
    ``laterality`` fix those parameters (everything else stays random). ``implant_designs`` draws the post-op
    implant from the wider range of designs (``vary_implant_design``); the knee and the acquisition stay those of
    the seed without it. ``dense_plates`` gives a pre-op knee denser subchondral plates and a bright posterior
    rim (``vary_native_plates``), likewise from a stream of its own; ``filled_notch`` a grey notch under a denser
    patella (``vary_native_notch``), from a third."""
    seed = _seed_of(rng_or_seed)
    rng = np.random.default_rng(seed)
    if phase is None:
        phase = PHASE_NAMES[int(rng.integers(2))]
    if phase not in PHASE_NAMES:
        raise ValueError(f"phase must be one of {PHASE_NAMES} or None, got {phase!r}")
    anatomy = sample_anatomy(rng, phase, hard=hard, atfa_deg=atfa_deg)
    acquisition = sample_acquisition(rng, hard=hard, laterality=laterality)
    if implant_designs and anatomy.implant is not None:
        design = vary_implant_design(anatomy.implant, anatomy.tibia.width, np.random.default_rng([seed, DESIGN_STREAM]))
        anatomy = dataclasses.replace(anatomy, implant=design)
    if anatomy.implant is None:  # the native knee's variants, each from a random stream of its own
        for wanted, vary, stream in ((dense_plates, vary_native_plates, PLATES_STREAM),
                                     (filled_notch, vary_native_notch, NOTCH_STREAM)):
            if wanted:
                anatomy = vary(anatomy, np.random.default_rng([seed, stream]))
    return SynthCase(seed, phase, hard, anatomy, acquisition)


def landmarks_mm(case: SynthCase) -> np.ndarray:
    """The scheme's landmarks of ``case`` in canonical knee millimetres (left knee, x lateral, y distal)."""
    return scheme_points(build_shapes(case.anatomy), load_scheme(case.phase))


def render_case(case: SynthCase, pixel_spacing_mm: float | None = None, clean: bool = False) -> SynthImage:
    """Render ``case`` at ``pixel_spacing_mm`` (default: the case's detector spacing). A coarser spacing
    renders the same anatomy and field of view directly at lower resolution. ``clean=True`` leaves out
    noise, texture, heel effect, collimation and the side marker."""
    acq = case.acquisition
    spacing = float(pixel_spacing_mm or acq.spacing_mm)
    if spacing <= 0:
        raise ValueError(f"pixel spacing must be positive, got {spacing}")
    scheme = load_scheme(case.phase)
    shapes = build_shapes(case.anatomy)
    points = scheme_points(shapes, scheme)
    out = render(shapes, case.anatomy, acq, points, spacing, case.seed, clean=clean)
    alignment = compute_alignment(out.landmarks, scheme, acq.laterality)
    return SynthImage(
        image=out.image, bits_stored=acq.bits_stored, photometric=acq.photometric, pixel_spacing_mm=spacing,
        laterality=acq.laterality, phase=case.phase, scheme_id=scheme.id, landmarks=out.landmarks,
        visible=out.visible, atfa_fts_deg=alignment.atfa_fts_deg, atfa_fnts_deg=alignment.atfa_fnts_deg, case=case,
    )
