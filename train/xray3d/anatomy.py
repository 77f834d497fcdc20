"""The parameters of one 3D knee: bone sizes and shapes, coronal angles, joint spaces, pose, implants.

Everything is sampled here and nothing else is random in the projection renderer's geometry. Conventions: the
knee frame K is the tibia's own frame, in millimetres, for a *left* knee: x lateral, y distal along the tibial
shaft, z anterior, origin at the middle of the tibial plateau. The femur has its own frame F (x lateral, y distal
along its shaft, origin between the condyles at the level of the medial condyle's distal tip) and is placed in K
by the coronal angles and the joint spaces, then flexed.

Coronal angles (degrees): MPTA, the medial angle between the tibial axis and the plateau; aLDFA, the lateral
angle between the femoral axis and the distal condylar line; JLCA, the angle between the condylar line and the
plateau. The target anatomical tibiofemoral angle (valgus positive) is aTFA = MPTA - aLDFA - JLCA in the coronal
plane; what the radiograph shows differs by pose and projection, and the ground truth is measured on the image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model.vocabulary import PHASE_NAMES, PHASES, POSTOP


@dataclass(frozen=True)
class Tibia3D:
    width: float  # plateau width in 3D (medial to lateral rim)
    shaft_offset: float  # x of the shaft axis relative to the plateau middle
    shaft_halfwidth: float
    shaft_halfdepth: float
    plateau_halfdepth: float
    flare_end: float  # y where the metaphysis meets the shaft
    flare_power_medial: float
    flare_power_lateral: float
    cortex_shaft: float
    cortex_metaphysis: float
    subchondral: float  # dense plate under the articular surface
    mpta_deg: float
    posterior_slope_deg: float
    medial_depth: float  # concavity of the medial plateau
    lateral_depth: float  # of the lateral one (negative: convex)
    spine_medial_x: float
    spine_lateral_x: float
    spine_medial_height: float
    spine_lateral_height: float
    spine_sigma: float
    coronal_bow: float  # mm at 3 plateau widths from the joint, lateral positive


@dataclass(frozen=True)
class Femur3D:
    notch_halfwidth: float
    notch_height: float  # apex above the medial condyle's tip
    notch_power: float  # arch shape of the notch roof (2 round .. 6 boxy)
    condyle_rx_medial: float  # half the condyle's width
    condyle_rx_lateral: float
    condyle_ry: float  # vertical radius of both condyles
    condyle_rz: float  # antero-posterior radius
    condyle_z: float  # condyles' centre, posterior of the shaft axis (negative)
    aldfa_deg: float
    shaft_halfwidth: float
    shaft_taper: float  # mm narrower per 100 mm going proximally
    shaft_offset: float  # x of the shaft axis above the flare
    flare_length: float
    flare_power: float
    epicondyle_bulge: float  # mm beyond the condyles' widest point
    cortex_shaft: float
    cortex_metaphysis: float
    coronal_bow: float  # mm at 3 plateau widths, lateral positive
    sagittal_bow: float  # mm anterior at 3 plateau widths


@dataclass(frozen=True)
class Fibula3D:
    head_rx: float
    head_ry: float
    head_rz: float
    overlap: float  # how far the head reaches medially of the tibia's lateral rim
    apex_below: float  # head apex below the plateau
    head_z: float  # posterior (negative)
    neck_below: float
    shaft_radius: float
    tilt_deg: float
    cortex: float


@dataclass(frozen=True)
class Patella3D:
    x: float
    lower_pole_above: float  # above the joint line
    rx: float
    ry: float
    rz: float
    z: float


@dataclass(frozen=True)
class SoftTissue3D:
    knee_halfwidth: float
    thigh_halfwidth: float
    calf_halfwidth: float
    depth_ratio: float  # antero-posterior over medio-lateral radius
    fat_fraction: float  # subcutaneous fat as a fraction of the radius
    offset_x: float


@dataclass(frozen=True)
class Implant3D:
    resection_below: float  # tibial cut below the plateau middle
    tray_thickness: float
    tray_overhang_medial: float
    tray_overhang_lateral: float
    tray_tilt_deg: float  # tibial component varus(-)/valgus(+) relative to perpendicular to the tibial axis
    insert_thickness: float
    liftoff: float  # lateral minus medial insert gap
    stem_length: float
    stem_radius: float
    keel_width: float
    keel_depth: float
    cement: float
    runner_margin: float  # femoral component beyond the native condyles
    flange_height: float  # above the component's distal tip
    box_height: float  # roof of the intercondylar box above the tip
    mu_component: float  # per mm
    mu_tray: float
    mu_cement: float


@dataclass(frozen=True)
class Pose3D:
    flexion_deg: float  # femur relative to tibia
    tibia_tilt_deg: float  # tibial shaft out of the detector plane (positive: distal end lifted)
    rotation_deg: float  # limb rotation about the tibial axis (external positive)
    femur_rotation_deg: float  # femur relative to tibia about its axis
    inplane_deg: float  # image rotation, clockwise on screen
    knee_height: float  # bone centre above the detector
    gap_min: float  # the smaller of the two compartments' joint space (pre-op)
    jlca_deg: float


@dataclass(frozen=True)
class Knee3D:
    phase: str
    atfa_deg: float  # target coronal angle
    tibia: Tibia3D
    femur: Femur3D
    fibula: Fibula3D
    patella: Patella3D
    soft: SoftTissue3D
    pose: Pose3D
    implant: Implant3D | None
    mu_cortex: float
    mu_cancellous: float
    mu_soft: float
    mu_fat: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_atfa(rng: np.random.Generator, phase: str) -> float:
    """Target coronal aTFA: a different mixture from the 2D generator's, same clinical range."""
    if phase == POSTOP:
        return float(np.clip(rng.normal(4.5, 3.0), -12.0, 15.0))
    kind = rng.random()
    if kind < 0.4:
        return float(rng.normal(5.5, 2.0))
    if kind < 0.75:
        return float(rng.uniform(-15.0, 4.0))
    return float(rng.uniform(-18.0, 18.0))


def sample_knee(rng: np.random.Generator, phase: str, hard: bool = False, atfa_deg: float | None = None) -> Knee3D:
    if phase not in PHASE_NAMES:
        raise ValueError(f"phase must be one of {PHASE_NAMES}, got {phase!r}")
    u = rng.uniform
    postop = PHASES[phase].has_implants
    width = u(66.0, 84.0)
    atfa = sample_atfa(rng, phase)
    atfa = atfa if atfa_deg is None else float(atfa_deg)
    mpta = float(np.clip(rng.normal(87.0, 2.0) + 0.15 * min(atfa, 0.0), 80.0, 93.0))
    jlca = float(np.clip(rng.normal(0.0, 1.5) + 0.1 * min(atfa, 0.0), -5.0, 5.0))
    if postop:
        jlca = float(u(-2.0, 2.0))
    tibia = Tibia3D(
        width=width, shaft_offset=u(-3.0, 3.0), shaft_halfwidth=u(12.0, 15.5), shaft_halfdepth=u(11.5, 14.5),
        plateau_halfdepth=width * u(0.29, 0.34), flare_end=width * u(0.55, 0.9),
        flare_power_medial=u(0.55, 1.3), flare_power_lateral=u(0.55, 1.3),
        cortex_shaft=u(3.5, 6.0), cortex_metaphysis=u(0.8, 1.8), subchondral=u(1.0, 3.0),
        mpta_deg=mpta, posterior_slope_deg=u(2.0, 10.0),
        medial_depth=u(0.5, 3.0), lateral_depth=u(-1.0, 1.5),
        spine_medial_x=u(-9.0, -4.0), spine_lateral_x=u(2.0, 7.0),
        spine_medial_height=u(3.0, 8.0), spine_lateral_height=u(2.5, 7.0), spine_sigma=u(2.6, 4.0),
        coronal_bow=u(-4.0, 4.0),
    )
    nh = u(7.0, 10.5)
    condylar_width = width * u(0.98, 1.1)  # epicondylar width of the distal femur
    share = u(0.49, 0.55)  # of the two condyles' widths, the medial one's
    rx_m, rx_l = (condylar_width / 2 - nh) * share, (condylar_width / 2 - nh) * (1 - share)
    femur = Femur3D(
        notch_halfwidth=nh, notch_height=u(11.0, 20.0), notch_power=u(1.8, 3.0),
        condyle_rx_medial=rx_m, condyle_rx_lateral=rx_l, condyle_ry=u(18.0, 26.0), condyle_rz=u(24.0, 31.0),
        condyle_z=u(-10.0, -4.0), aldfa_deg=mpta - jlca - atfa,
        shaft_halfwidth=u(12.0, 15.0), shaft_taper=u(0.0, 1.5), shaft_offset=u(-3.0, 3.0),
        flare_length=width * u(0.35, 0.55), flare_power=u(1.6, 2.8), epicondyle_bulge=u(0.0, 2.0),
        cortex_shaft=u(4.5, 7.0), cortex_metaphysis=u(0.8, 1.8),
        coronal_bow=u(-3.0, 5.0), sagittal_bow=u(6.0, 18.0),
    )
    fibula = Fibula3D(
        head_rx=u(9.0, 12.5), head_ry=u(9.0, 13.0), head_rz=u(9.0, 12.0), overlap=u(2.0, 10.0),
        apex_below=u(5.0, 15.0), head_z=u(-22.0, -12.0), neck_below=width * u(0.45, 0.6),
        shaft_radius=u(5.5, 7.5), tilt_deg=u(-1.0, 3.0), cortex=u(1.5, 2.5),
    )
    patella = Patella3D(x=u(-2.0, 10.0), lower_pole_above=u(0.0, 25.0), rx=u(18.0, 23.0), ry=u(20.0, 26.0),
                        rz=u(9.0, 12.0), z=u(34.0, 44.0))
    soft = SoftTissue3D(knee_halfwidth=width * u(0.62, 0.95), thigh_halfwidth=u(60.0, 100.0),
                        calf_halfwidth=u(48.0, 75.0), depth_ratio=u(0.8, 1.05), fat_fraction=u(0.08, 0.3),
                        offset_x=u(-8.0, 8.0))
    flex = u(0.0, 20.0) if rng.random() < 0.6 else u(0.0, 4.0)
    rot_limit = 25.0 if hard else 15.0
    pose = Pose3D(
        flexion_deg=flex, tibia_tilt_deg=u(-6.0, 8.0), rotation_deg=u(-rot_limit, rot_limit),
        femur_rotation_deg=u(-4.0, 4.0), inplane_deg=u(-30.0, 30.0) if hard or rng.random() < 0.3 else rng.normal(0, 4),
        knee_height=u(55.0, 95.0), gap_min=u(0.3, 3.0) if rng.random() < 0.4 else u(3.0, 7.0), jlca_deg=jlca,
    )
    implant = None
    if postop:
        long_stem = rng.random() < (0.5 if hard else 0.15)
        metal = u(0.6, 1.6)
        implant = Implant3D(
            resection_below=u(6.0, 11.0), tray_thickness=u(2.5, 5.0), tray_overhang_medial=u(-3.0, 2.0),
            tray_overhang_lateral=u(-3.0, 2.0), tray_tilt_deg=u(-3.0, 3.0), insert_thickness=u(7.0, 15.0),
            liftoff=u(-1.0, 1.0), stem_length=u(80.0, 150.0) if long_stem else u(28.0, 55.0),
            stem_radius=u(6.0, 8.0) if long_stem else u(4.5, 7.0), keel_width=u(14.0, 26.0),
            keel_depth=u(8.0, 18.0), cement=u(0.5, 2.5), runner_margin=u(1.5, 3.5), flange_height=u(22.0, 36.0),
            box_height=u(12.0, 20.0), mu_component=metal, mu_tray=u(0.15, 1.2), mu_cement=u(0.015, 0.05),
        )
    return Knee3D(
        phase=phase, atfa_deg=atfa, tibia=tibia, femur=femur, fibula=fibula, patella=patella, soft=soft,
        pose=pose, implant=implant, mu_cortex=u(0.028, 0.045), mu_cancellous=u(0.005, 0.014),
        mu_soft=u(0.018, 0.022), mu_fat=u(0.015, 0.018),
    )
