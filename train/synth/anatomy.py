"""Random knee anatomy for the synthetic radiographs: the parameters of every bone (and implant), sampled.

Canonical knee frame, in millimetres on the detector: a *left* knee seen AP, x toward the lateral side
(fibula), y distal, origin at the midpoint of the two tibial plateau corners (post-op: the corners of the
resected tibial surface), the corner line along x. ``shapes.build_shapes`` turns these numbers into
outlines. Sizes follow the anatomy notes (plateau 70-80 mm, shafts 25-30 mm, fibula 12-15 mm, joint
space 3-7 mm); the target anatomical tibiofemoral angle is the angle between the femoral and tibial shaft
axes, positive (valgus) when the tibia turns laterally relative to the femur going distally.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model.vocabulary import PHASE_NAMES, PHASES, POSTOP

# optional widenings (``vary_implant_design``, ``vary_native_plates``, ``vary_native_notch``)
VARIANTS = ("implant_designs", "dense_plates", "filled_notch")


@dataclass(frozen=True)
class TibiaParams:
    width: float  # corner-to-corner distance = the reference length L
    axis_offset: float  # x of the shaft axis on the corner line
    tilt_deg: float  # shaft axis turned toward lateral going distally
    shaft_halfwidth: float
    flare_end: float  # y where the metaphyseal flare meets the straight shaft
    flare_power_medial: float  # shape of the flare (see shapes._side)
    flare_power_lateral: float
    medial_depth: float  # concavity of the medial plateau (mm, distal positive)
    lateral_depth: float
    spine_medial_x: float
    spine_medial_height: float
    spine_lateral_x: float
    spine_lateral_height: float
    spine_sigma: float
    posterior_rim_offset: float  # double contour of the posterior rim in flexion (0 = none)
    osteophyte_medial: float  # marginal spur size in mm (0 = none)
    osteophyte_lateral: float
    subchondral_medial: float  # dense subchondral plate under the articular surface (mm, 0 = none)
    subchondral_lateral: float
    # Denser plates (``vary_native_plates``); the defaults are the generator's original native knee.
    plate_density: float = 1.0  # times the usual density of the subchondral plates and the posterior rim
    rim_thickness: float = 0.9  # mm
    rim_flatness: float = 0.0  # 0: the rim follows the plateau's concavity; 1: a straight band between the corners


@dataclass(frozen=True)
class FemurParams:
    atfa_deg: float  # target angle from the femoral to the tibial shaft axis (valgus positive)
    shaft_halfwidth: float
    shaft_taper: float  # mm narrower per 100 mm going proximally
    axis_offset: float  # shaft axis x at the notch centre (mid-height of the notch), relative to it
    flare_length: float  # from the epicondyles up to where the straight shaft starts
    flare_power_medial: float
    flare_power_lateral: float
    epicondyle_height: float  # widest point of the condyles above the higher distal condylar point
    condyle_halfwidth_medial: float  # from the notch centre to the medial epicondyle
    condyle_halfwidth_lateral: float
    notch_x: float
    notch_width: float
    notch_height: float  # apex above the notch edges
    notch_exponent: float  # 2: round arch (native); larger: box (implant)
    inner_width_medial: float  # distal point to notch edge, across
    inner_width_lateral: float
    inner_rise_medial: float  # notch edge above the distal point
    inner_rise_lateral: float
    condyle_exponent_medial: float
    condyle_exponent_lateral: float
    joint_space_medial: float  # distal condyle to the surface below it
    joint_space_lateral: float
    osteophyte: float  # spur on the medial condyle (mm, 0 = none)
    subchondral: float  # dense plate under the condylar articular surfaces (mm, 0 = none)
    # A filled notch (``vary_native_notch``); the default is the generator's original dark notch.
    notch_fill: float = 0.0  # line integral added inside the notch (the condyles' full depth is about 1)


@dataclass(frozen=True)
class FibulaParams:
    head_overlap: float  # how far the head reaches medially behind the tibia's lateral outline
    head_halfwidth_medial: float
    head_halfwidth_lateral: float
    apex_level: float  # y of the head's apex (distal to the plateau line)
    head_height: float  # apex above the head's widest level
    head_exponent: float
    neck_level: float  # y where the head meets the shaft
    shaft_halfwidth: float
    shaft_shift: float  # shaft centre at the neck relative to the head centre (lateral positive)
    tilt_deg: float  # relative to the tibial shaft, toward lateral going distally


@dataclass(frozen=True)
class PatellaParams:
    x: float
    lower_pole: float  # y of the distal pole
    halfwidth: float
    height: float
    taper: float  # narrowing toward the distal pole
    density: float = 1.0  # times the usual attenuation (``vary_native_notch``)


@dataclass(frozen=True)
class SoftTissueParams:
    knee_margin: float  # skin beyond the femoral epicondyles, each side
    thigh_halfwidth: float
    calf_halfwidth: float
    asymmetry: float  # skin centre shift toward lateral


@dataclass(frozen=True)
class ImplantParams:
    tray_thickness: float
    tray_overhang_medial: float  # beyond the resected corner (negative: undersized)
    tray_overhang_lateral: float
    cement_under_tray: float
    poly_thickness: float  # polyethylene insert (radiolucent gap) between tray and femoral component
    liftoff: float  # lateral minus medial insert gap (condylar lift-off)
    keel_width: float
    keel_depth: float
    stem_width: float
    stem_length: float  # below the tray, tip included
    stem_offset: float
    stem_cement: float
    flange_height_medial: float  # flange top above the distal point of the component
    flange_height_lateral: float
    flange_arch: float  # the closing edge of the component rises this much in the middle
    # Design variety (``vary_implant_design``); the defaults are the generator's one original design.
    component_density: float = 1.0  # fraction of a cobalt-chrome line integral (1: far beyond the window)
    tray_density: float = 1.0  # the same for the tray and its stem (titanium trays are fainter)


@dataclass(frozen=True)
class KneeAnatomy:
    phase: str
    tibia: TibiaParams
    femur: FemurParams
    fibula: FibulaParams
    patella: PatellaParams
    soft: SoftTissueParams
    implant: ImplantParams | None

    @property
    def reference_length(self) -> float:
        return self.tibia.width


def sample_atfa(rng: np.random.Generator, phase: str) -> float:
    """Target aTFA: mostly 5-7 deg valgus, with varus and valgus deformities (pre-op) and corrections."""
    u = rng.random()
    if phase == POSTOP:
        value = rng.normal(5.0, 2.5) if u < 0.85 else rng.uniform(-15.0, 15.0)
    elif u < 0.45:
        value = rng.normal(6.0, 1.5)
    elif u < 0.8:
        value = rng.uniform(-16.0, 5.0)
    else:
        value = rng.uniform(-20.0, 20.0)
    return float(np.clip(value, -20.0, 20.0))


def _tibia(rng: np.random.Generator, width: float, resected: bool, flexion: float, oa: float,
           femur: FemurParams) -> TibiaParams:
    """The tibia; its spines stand under the femoral notch."""
    u = rng.uniform
    return TibiaParams(
        width=width,
        axis_offset=u(-3.0, 3.0),
        tilt_deg=u(-2.5, 2.5),
        shaft_halfwidth=u(12.0, 15.0),
        flare_end=width * u(0.6, 0.9),
        flare_power_medial=u(1.3, 2.0),
        flare_power_lateral=u(1.3, 2.0),
        medial_depth=0.0 if resected else u(0.5, 3.0),
        lateral_depth=0.0 if resected else u(-0.8, 1.5),
        spine_medial_x=femur.notch_x - femur.notch_width * u(0.2, 0.35),
        spine_medial_height=0.0 if resected else u(7.0, 12.0),
        spine_lateral_x=femur.notch_x + femur.notch_width * u(0.15, 0.3),
        spine_lateral_height=0.0 if resected else u(5.0, 10.0),
        spine_sigma=u(2.2, 3.2),
        posterior_rim_offset=0.0 if resected or rng.random() < 0.5 else 1.5 + 5.0 * flexion,
        osteophyte_medial=u(1.5, 5.0) if not resected and rng.random() < oa else 0.0,
        osteophyte_lateral=u(1.0, 4.0) if not resected and rng.random() < 0.5 * oa else 0.0,
        subchondral_medial=0.0 if resected else u(0.8, 2.0) + 2.0 * oa * rng.random(),
        subchondral_lateral=0.0 if resected else u(0.8, 2.0),
    )


def _femur(rng: np.random.Generator, width: float, atfa: float, implant: bool, rotation: float,
           oa: float) -> FemurParams:
    u = rng.uniform
    condyle_half = width * u(0.5, 0.56)
    asym = 0.04 * rotation
    varus = max(0.0, -atfa)
    valgus = max(0.0, atfa - 7.0)
    base_space = u(4.0, 7.0)
    return FemurParams(
        atfa_deg=atfa,
        shaft_halfwidth=u(12.5, 15.0),
        shaft_taper=u(0.0, 1.2),
        axis_offset=float(np.clip(rng.normal(0.0, 1.0), -2.0, 2.0)),
        flare_length=width * u(0.38, 0.52),
        flare_power_medial=u(2.2, 3.5),
        flare_power_lateral=u(2.2, 3.5),
        epicondyle_height=width * u(0.2, 0.3),
        condyle_halfwidth_medial=condyle_half * (1.0 - asym) + u(-1.5, 1.5),
        condyle_halfwidth_lateral=condyle_half * (1.0 + asym) + u(-1.5, 1.5),
        notch_x=u(-2.5, 2.5),
        notch_width=u(17.0, 23.0) if implant else u(15.0, 23.0),
        notch_height=u(10.0, 16.0) if implant else u(12.0, 20.0),
        notch_exponent=u(5.0, 9.0) if implant else u(1.8, 2.6),
        inner_width_medial=u(6.0, 10.0),
        inner_width_lateral=u(6.0, 10.0),
        inner_rise_medial=u(3.0, 7.0),
        inner_rise_lateral=u(3.0, 7.0),
        condyle_exponent_medial=u(1.9, 2.8),
        condyle_exponent_lateral=u(1.9, 2.8),
        # post-op the component rests on the polyethylene insert: the "joint space" is the insert
        joint_space_medial=0.0 if implant else float(np.clip(base_space - 0.35 * varus - u(0, 2.0) * oa, 0.6, 8.0)),
        joint_space_lateral=0.0 if implant else float(np.clip(base_space - 0.35 * valgus - u(0, 1.0) * oa, 0.6, 8.0)),
        osteophyte=u(1.5, 5.0) if not implant and rng.random() < oa else 0.0,
        subchondral=0.0 if implant else u(0.8, 2.0),
    )


def _fibula(rng: np.random.Generator, width: float, rotation: float) -> FibulaParams:
    u = rng.uniform
    hw_m = u(9.5, 12.5)
    return FibulaParams(
        head_overlap=float(np.clip(u(4.0, 9.0) + 2.5 * rotation, 2.0, hw_m - 2.5)),
        head_halfwidth_medial=hw_m,
        head_halfwidth_lateral=u(9.0, 12.5),
        apex_level=u(4.0, 13.0),
        head_height=u(8.0, 12.0),
        head_exponent=u(2.0, 2.8),
        neck_level=width * u(0.5, 0.6),
        shaft_halfwidth=u(6.0, 7.5),
        shaft_shift=u(-4.0, 1.0),
        tilt_deg=u(-0.5, 3.0),
    )


def _implant(rng: np.random.Generator, width: float, long_stem: bool) -> ImplantParams:
    u = rng.uniform
    tray, cement = u(2.5, 4.5), u(0.2, 0.8)
    return ImplantParams(
        tray_thickness=tray,
        tray_overhang_medial=u(-3.0, 1.5),
        tray_overhang_lateral=u(-3.0, 1.5),
        cement_under_tray=cement,
        # the femoral component stays below the 0.3 L level where the femoral outlines' condylar part starts
        poly_thickness=min(u(8.0, 16.0), 0.3 * width - 5.0 - tray - cement),
        liftoff=u(-1.0, 1.0),
        keel_width=u(16.0, 26.0),
        keel_depth=u(10.0, 18.0),
        stem_width=u(12.0, 16.0) if long_stem else u(9.0, 13.0),
        stem_length=u(80.0, 140.0) if long_stem else u(30.0, 55.0),
        stem_offset=u(-3.0, 3.0),
        stem_cement=u(0.8, 2.5),
        flange_height_medial=u(15.0, 26.0),
        flange_height_lateral=u(15.0, 26.0),
        flange_arch=u(0.0, 10.0),
    )


def vary_implant_design(imp: ImplantParams, width: float, rng: np.random.Generator) -> ImplantParams:
    """Another implant design for the same knee: thicker or thinner trays, keels and stems of other shapes, taller
    flanges, flat or arched flange lines, and metal that is not always far beyond the display window (titanium,
    thin parts). Drawn from its own ``rng`` so the rest of the case stays the same."""
    u = rng.uniform
    long_stem = imp.stem_length > 60.0
    tray, cement = u(2.0, 6.5), u(0.2, 1.5)
    return dataclasses.replace(
        imp,
        tray_thickness=tray,
        tray_overhang_medial=u(-3.0, 3.0),
        tray_overhang_lateral=u(-3.0, 3.0),
        cement_under_tray=cement,
        poly_thickness=min(u(6.0, 16.0), 0.3 * width - 5.0 - tray - cement),
        keel_width=u(12.0, 40.0),
        keel_depth=u(4.0, 20.0),
        stem_width=u(11.0, 18.0) if long_stem else u(8.0, 16.0),
        stem_length=imp.stem_length if long_stem else u(20.0, 60.0),
        flange_height_medial=u(15.0, 38.0),
        flange_height_lateral=u(15.0, 38.0),
        flange_arch=0.0 if rng.random() < 0.3 else u(0.0, 10.0),
        component_density=1.0 if rng.random() < 0.6 else u(0.12, 0.6),
        tray_density=1.0 if rng.random() < 0.5 else u(0.12, 0.6),
    )


def vary_native_plates(a: KneeAnatomy, rng: np.random.Generator) -> KneeAnatomy:
    """The same native knee with denser, thicker subchondral plates and a posterior plateau rim that is always there,
    thicker and brighter, anywhere from following the plateau's concavity to a straight band between the corners (the
    plateau's cortical plate seen edge-on): hard negatives for the pre/post-op
    decision, which otherwise learns "a bright flat band across the tibia" as "a tray". Its own ``rng``."""
    u = rng.uniform
    flexion_rim = a.tibia.posterior_rim_offset
    tibia = dataclasses.replace(
        a.tibia, subchondral_medial=u(1.0, 4.5), subchondral_lateral=u(1.0, 4.5), plate_density=u(1.5, 8.0),
        posterior_rim_offset=flexion_rim if flexion_rim > 0 else u(0.5, 4.0), rim_thickness=u(0.9, 3.0),
        rim_flatness=u(0.0, 1.0))
    return dataclasses.replace(a, tibia=tibia, femur=dataclasses.replace(a.femur, subchondral=u(0.8, 3.5)))


def vary_native_notch(a: KneeAnatomy, rng: np.random.Generator) -> KneeAnatomy:
    """The same native knee with its intercondylar notch partly filled (the trochlea and the posterior condyles lie
    in the X-ray's path through the notch, so a projected notch is grey, not black) and a denser patella over it:
    hard negatives for the pre/post-op decision, which otherwise learns "a deep dark notch" as "a native knee".
    Its own ``rng``."""
    u = rng.uniform
    femur = dataclasses.replace(a.femur, notch_fill=u(0.3, 0.9))
    return dataclasses.replace(a, femur=femur, patella=dataclasses.replace(a.patella, density=u(1.5, 5.0)))


def sample_anatomy(rng: np.random.Generator, phase: str, hard: bool = False,
                   atfa_deg: float | None = None) -> KneeAnatomy:
    """Sample one knee. ``atfa_deg`` fixes the target angle; otherwise it is drawn by ``sample_atfa``."""
    if phase not in PHASE_NAMES:
        raise ValueError(f"phase must be one of {PHASE_NAMES}, got {phase!r}")
    postop = PHASES[phase].has_implants
    u = rng.uniform
    width = u(66.0, 80.0) if postop else u(68.0, 82.0)
    atfa = sample_atfa(rng, phase)  # drawn even when fixed, so that the rest of the knee stays the same
    atfa = atfa if atfa_deg is None else float(atfa_deg)
    rotation = u(-1.0, 1.0)  # limb (internal/external) rotation, -1..1
    flexion = u(0.0, 1.0) if rng.random() < 0.35 else 0.0
    oa = 0.0 if postop else u(0.0, 0.8)
    femur = _femur(rng, width, atfa, postop, rotation, oa)
    tibia = _tibia(rng, width, postop, flexion, oa, femur)
    patella_h = u(42.0, 54.0)
    patella = PatellaParams(
        x=femur.notch_x + u(2.0, 9.0) + 3.0 * rotation,
        lower_pole=u(-22.0, -6.0) - 8.0 * flexion,
        halfwidth=u(17.0, 22.0),
        height=patella_h,
        taper=u(0.1, 0.3),
    )
    soft = SoftTissueParams(
        knee_margin=u(10.0, 35.0),
        thigh_halfwidth=u(62.0, 95.0),
        calf_halfwidth=u(50.0, 75.0),
        asymmetry=u(-6.0, 6.0),
    )
    implant = _implant(rng, width, long_stem=rng.random() < (0.6 if hard else 0.15)) if postop else None
    return KneeAnatomy(phase, tibia, femur, _fibula(rng, width, rotation), patella, soft, implant)
