"""Outlines of the synthetic knee (bones, soft tissue, implants) as dense millimetre polylines.

Built from ``anatomy.KneeAnatomy`` in the canonical frame (left knee, x lateral, y distal, origin between
the plateau corners). Besides the closed polygons that are rendered, the builder keeps the open pieces
that the landmark scheme refers to (femoral sides, condylar and notch contours, plateau, tibial and
fibular sides, implant contours), so ``landmarks.scheme_points`` can place every landmark on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from train.synth.anatomy import FemurParams, FibulaParams, KneeAnatomy, TibiaParams
from train.synth.geometry import (
    arc_length,
    band,
    crossing,
    cut,
    first_exit,
    inset_polygon,
    join,
    sample_even,
    smoothstep,
    superellipse_arc,
)

FAR = 480.0  # shafts and soft tissue run this far (mm) beyond the joint: always past the image border
INNER_END_T = math.pi / 5  # where a condyle's inner contour meets the notch (superellipse angle)
MIN_CLEARANCE = 0.6  # mm between femur and tibia, after joint-space narrowing
SKIN_MIN = 10.0  # mm of soft tissue beyond the bones, at least


@dataclass(frozen=True)
class Diaphysis:
    """Where a long bone has its thick shaft cortex: weight 1 proximal of ``full`` and 0 distal of ``none``
    (or the other way round when ``full`` > ``none``), measured along ``direction`` from ``point``."""

    point: np.ndarray
    direction: np.ndarray  # unit, distal
    full: float
    none: float

    def x_at(self, y: np.ndarray) -> np.ndarray:
        """x of the bone axis at level(s) y."""
        return self.point[0] + (np.asarray(y) - self.point[1]) * self.direction[0] / self.direction[1]


@dataclass(frozen=True)
class FemurShape:
    polygon: np.ndarray  # medial side down, condyles and notch, lateral side up (closes beyond the image)
    side_medial: np.ndarray  # proximal (beyond the image) to the medial condyle's most distal point
    side_lateral: np.ndarray
    inner_medial: np.ndarray  # medial distal point to the medial notch edge
    notch: np.ndarray  # medial notch edge over the apex to the lateral edge
    notch_apex_index: int
    inner_lateral: np.ndarray  # lateral notch edge to the lateral distal point
    diaphysis: Diaphysis


@dataclass(frozen=True)
class TibiaShape:
    polygon: np.ndarray
    plateau: np.ndarray  # medial corner to lateral corner
    side_medial: np.ndarray  # medial corner down beyond the image
    side_lateral: np.ndarray
    diaphysis: Diaphysis


@dataclass(frozen=True)
class FibulaShape:
    polygon: np.ndarray
    head: np.ndarray  # medial contact with the tibia, over the apex, to the lateral neck
    side_medial: np.ndarray  # neck down beyond the image
    side_lateral: np.ndarray
    diaphysis: Diaphysis


@dataclass(frozen=True)
class ImplantShapes:
    component_outline: np.ndarray  # medial flange top around the condyles to the lateral flange top
    component_polygon: np.ndarray
    tray_polygon: np.ndarray
    tray_top: np.ndarray  # medial to lateral
    tray_bottom: np.ndarray  # lateral to medial
    stem: np.ndarray  # medial junction with the tray, down, tip, up to the lateral junction
    stem_polygon: np.ndarray
    stem_cement_polygon: np.ndarray
    tray_cement_polygon: np.ndarray
    insert_polygon: np.ndarray


@dataclass(frozen=True)
class KneeShapes:
    reference_length: float
    femur: FemurShape
    tibia: TibiaShape
    fibula: FibulaShape
    patella: np.ndarray
    leg: np.ndarray
    osteophytes: tuple[np.ndarray, ...]
    subchondral: tuple[np.ndarray, ...]  # dense strips under the articular surfaces
    posterior_rim: np.ndarray | None  # a thin band polygon (double contour in flexion)
    implant: ImplantShapes | None


def _plateau_base(t: TibiaParams, x: np.ndarray) -> np.ndarray:
    """Plateau surface without the spines: concave medial, flatter lateral; 0 at both corners."""
    half = t.width / 2
    y = np.zeros_like(x)
    med = (x >= -half) & (x <= t.spine_medial_x)
    y[med] = t.medial_depth * np.sin(np.pi * (x[med] + half) / (t.spine_medial_x + half))
    lat = (x >= t.spine_lateral_x) & (x <= half)
    y[lat] = t.lateral_depth * np.sin(np.pi * (x[lat] - t.spine_lateral_x) / (half - t.spine_lateral_x))
    return y


def _spines(t: TibiaParams, x: np.ndarray) -> np.ndarray:
    def bump(centre: float) -> np.ndarray:
        return np.exp(-0.5 * ((x - centre) / t.spine_sigma) ** 2)

    y = -(t.spine_medial_height * bump(t.spine_medial_x) + t.spine_lateral_height * bump(t.spine_lateral_x))
    half = t.width / 2
    ends = np.interp(x, [-half, half], [y[0], y[-1]])  # keep both corners exactly on y = 0
    return y - ends


def _side(y: np.ndarray, shaft_x: np.ndarray, start_x: float, y0: float, y1: float, k: float) -> np.ndarray:
    """A cortex that leaves ``start_x`` at level ``y0`` with a vertical tangent and blends into the straight
    shaft ``shaft_x`` (given at the same ``y``) by level ``y1`` (either above or below ``y0``). The blend
    ``(1 - t)^k (1 + k t)`` is flat at both ends; a larger ``k`` leaves the start sooner and tapers longer."""
    t = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)
    return shaft_x + (start_x - shaft_x) * (1.0 - t) ** k * (1.0 + k * t)


def _tibia(t: TibiaParams, spine_scale: float) -> TibiaShape:
    half = t.width / 2
    x = np.linspace(-half, half, 481)
    plateau = np.stack([x, _plateau_base(t, x) + spine_scale * _spines(t, x)], axis=1)
    tilt = math.radians(t.tilt_deg)
    y = np.concatenate([np.linspace(0.0, t.flare_end, 200), [FAR]])
    axis_x = t.axis_offset + y * math.tan(tilt)
    hw = t.shaft_halfwidth / math.cos(tilt)
    side_m = np.stack([_side(y, axis_x - hw, -half, 0.0, t.flare_end, t.flare_power_medial), y], axis=1)
    side_l = np.stack([_side(y, axis_x + hw, half, 0.0, t.flare_end, t.flare_power_lateral), y], axis=1)
    polygon = join(plateau, side_l, side_m[::-1])[:-1]
    direction = np.array([math.sin(tilt), math.cos(tilt)])
    diaphysis = Diaphysis(np.array([t.axis_offset, 0.0]), direction, full=1.3 * t.flare_end,
                          none=0.8 * t.flare_end)
    return TibiaShape(polygon, plateau, side_m, side_l, diaphysis)


@dataclass(frozen=True)
class _DistalFemur:
    outer_medial: np.ndarray  # epicondyle to distal point
    inner_medial: np.ndarray
    notch: np.ndarray
    apex_index: int
    inner_lateral: np.ndarray
    outer_lateral: np.ndarray  # distal point to epicondyle
    epicondyle_y: float
    flare_start_y: float  # where the straight shaft ends

    @property
    def lower_envelope(self) -> np.ndarray:
        """Distal contour from the medial to the lateral distal point (a function of x)."""
        return join(self.inner_medial, self.notch, self.inner_lateral)


def _distal_femur(f: FemurParams, y_dm: float, y_dl: float) -> _DistalFemur:
    y_e = min(y_dm, y_dl) - f.epicondyle_height
    x_nm, x_nl = f.notch_x - f.notch_width / 2, f.notch_x + f.notch_width / 2
    x_dm, x_dl = x_nm - f.inner_width_medial, x_nl + f.inner_width_lateral
    x_em, x_el = f.notch_x - f.condyle_halfwidth_medial, f.notch_x + f.condyle_halfwidth_lateral

    q = superellipse_arc(f.condyle_exponent_medial, 0.0, math.pi / 2)
    outer_m = np.stack([x_dm - (x_dm - x_em) * q[:, 0], y_e + (y_dm - y_e) * q[:, 1]], axis=1)
    q = superellipse_arc(f.condyle_exponent_lateral, 0.0, math.pi / 2)[::-1]
    outer_l = np.stack([x_dl + (x_el - x_dl) * q[:, 0], y_e + (y_dl - y_e) * q[:, 1]], axis=1)

    def inner(exponent: float, width: float, rise: float) -> np.ndarray:
        """Unit-free inner contour from the distal point (0, 0) to the notch edge (width, -rise)."""
        arc = superellipse_arc(exponent, INNER_END_T, math.pi / 2, 100)[::-1]
        a = width / arc[-1, 0]
        b = rise / (1.0 - arc[-1, 1])
        return np.stack([a * arc[:, 0], b * (arc[:, 1] - 1.0)], axis=1)

    in_m = inner(f.condyle_exponent_medial, f.inner_width_medial, f.inner_rise_medial) + [x_dm, y_dm]
    in_l = inner(f.condyle_exponent_lateral, f.inner_width_lateral, f.inner_rise_lateral)
    in_l = (in_l * [-1.0, 1.0] + [x_dl, y_dl])[::-1]
    y_nm, y_nl = in_m[-1, 1], in_l[0, 1]
    phi = np.linspace(math.pi, 0.0, 241)
    base = y_nm + (y_nl - y_nm) * (1.0 - np.cos(phi)) / 2
    notch = np.stack([f.notch_x + f.notch_width / 2 * np.cos(phi),
                      base - f.notch_height * np.clip(np.sin(phi), 0, None) ** (2.0 / f.notch_exponent)], axis=1)
    return _DistalFemur(outer_m, in_m, notch, 120, in_l, outer_l, y_e, y_e - f.flare_length)


def _femur(a: KneeAnatomy, surface_y) -> tuple[FemurShape, _DistalFemur]:
    """The femur, its condyles resting ``joint_space`` above ``surface_y(x)`` (the plateau or the insert)."""
    f = a.femur
    x_dm = f.notch_x - f.notch_width / 2 - f.inner_width_medial
    x_dl = f.notch_x + f.notch_width / 2 + f.inner_width_lateral
    y_dm = float(surface_y(np.array([x_dm]))[0]) - f.joint_space_medial
    y_dl = float(surface_y(np.array([x_dl]))[0]) - f.joint_space_lateral
    distal = _distal_femur(f, y_dm, y_dl)
    if a.implant is None:  # lift a condyle that would touch the curved plateau away from its distal point
        half = a.tibia.width / 2

        def lift(condyle: np.ndarray) -> float:
            over = condyle[(condyle[:, 0] > -half) & (condyle[:, 0] < half)]
            gap = surface_y(over[:, 0]) - over[:, 1]
            return max(0.0, MIN_CLEARANCE - float(gap.min())) if gap.size else 0.0

        y_dm -= lift(join(distal.outer_medial, distal.inner_medial))
        y_dl -= lift(join(distal.inner_lateral, distal.outer_lateral))
        distal = _distal_femur(f, y_dm, y_dl)

    phi = math.radians(a.tibia.tilt_deg - f.atfa_deg)  # shaft direction, toward lateral going distally
    # the shaft axis passes (axis_offset from) the notch centre, half-way up the notch
    x0 = f.notch_x + f.axis_offset
    y0 = (distal.notch[0, 1] + distal.notch[-1, 1]) / 2 - 0.5 * f.notch_height
    y_e, y_fs = distal.epicondyle_y, distal.flare_start_y
    y = np.concatenate([[-FAR], np.linspace(y_fs, y_e, 200)])
    axis_x = x0 + (y - y0) * math.tan(phi)
    hw = (f.shaft_halfwidth + f.shaft_taper * (y - y_fs) / 100.0) / math.cos(phi)
    side_m = np.stack([_side(y, axis_x - hw, distal.outer_medial[0, 0], y_e, y_fs, f.flare_power_medial), y], 1)
    side_l = np.stack([_side(y, axis_x + hw, distal.outer_lateral[-1, 0], y_e, y_fs, f.flare_power_lateral), y], 1)
    side_m = join(side_m, distal.outer_medial)
    side_l = join(side_l, distal.outer_lateral[::-1])
    contour = join(side_m, distal.lower_envelope, side_l[::-1])
    direction = np.array([math.sin(phi), math.cos(phi)])
    along = (y_fs - y0) / math.cos(phi)
    diaphysis = Diaphysis(np.array([x0, y0]), direction, full=along - 5.0, none=along + 20.0)
    shape = FemurShape(contour, side_m, side_l, distal.inner_medial, distal.notch, distal.apex_index,
                       distal.inner_lateral, diaphysis)
    return shape, distal


def _subchondral(a: KneeAnatomy, tibia: TibiaShape, distal: _DistalFemur) -> tuple[np.ndarray, ...]:
    """Dense plates under the plateau (medial and lateral halves) and the condyles' distal surfaces."""
    t, f = a.tibia, a.femur
    out = []
    plateau = tibia.plateau
    for part, thickness in ((plateau[plateau[:, 0] <= t.spine_medial_x], t.subchondral_medial),
                            (plateau[plateau[:, 0] >= t.spine_lateral_x], t.subchondral_lateral)):
        if thickness > 0 and len(part) > 2:
            out.append(band(part, thickness, side=-1.0))
    if f.subchondral > 0:  # the distal half of each condyle's outer contour, and its inner contour
        outer_m, outer_l = distal.outer_medial, distal.outer_lateral
        out.append(band(join(outer_m[len(outer_m) // 2:], distal.inner_medial), f.subchondral))
        out.append(band(join(distal.inner_lateral, outer_l[: len(outer_l) // 2]), f.subchondral))
    return tuple(out)


def _spine_scale(t: TibiaParams, distal: _DistalFemur) -> float:
    """Largest scale (<= 1) of the tibial spines that keeps them clear of the femoral notch."""
    env = distal.lower_envelope
    x = np.linspace(env[0, 0], env[-1, 0], 300)
    spines = -_spines(t, x)
    room = _plateau_base(t, x) - np.interp(x, env[:, 0], env[:, 1]) - MIN_CLEARANCE
    lifted = spines > 0.05
    if not lifted.any():
        return 1.0
    return float(np.clip(np.min(room[lifted] / spines[lifted]), 0.0, 1.0))


def _fibula(p: FibulaParams, tibia: TibiaShape, tibia_tilt_deg: float) -> FibulaShape:
    def x_tl(level):  # the tibia's lateral cortex at a level
        return np.interp(level, tibia.side_lateral[:, 1], tibia.side_lateral[:, 0])

    y_w = p.apex_level + p.head_height
    # keep the apex clear of the tibia so that the head's outline leaves the tibia before the apex
    overlap = min(p.head_overlap, float(x_tl(y_w) - x_tl(p.apex_level)) + p.head_halfwidth_medial - 2.5)
    x_h = float(x_tl(y_w)) - overlap + p.head_halfwidth_medial
    r = p.shaft_halfwidth
    x_c = x_h + max(p.shaft_shift, r - p.head_halfwidth_medial + 1.5)
    x_c += max(0.0, float(x_tl(p.neck_level)) + 3.0 - (x_c - r))  # an interosseous gap at the neck
    ang = math.radians(tibia_tilt_deg + p.tilt_deg)
    y = np.concatenate([np.linspace(y_w, p.neck_level, 120), [FAR]])
    axis_x = x_c + (y - p.neck_level) * math.tan(ang)
    hw = r / math.cos(ang)
    side_m = np.stack([_side(y, axis_x - hw, x_h - p.head_halfwidth_medial, y_w, p.neck_level, 2.5), y], 1)
    side_l = np.stack([_side(y, axis_x + hw, x_h + p.head_halfwidth_lateral, y_w, p.neck_level, 2.5), y], 1)
    q = superellipse_arc(p.head_exponent, 0.0, math.pi / 2)
    dome_m = np.stack([x_h - p.head_halfwidth_medial * q[:, 0], y_w - p.head_height * q[:, 1]], 1)
    dome_l = np.stack([x_h + p.head_halfwidth_lateral * q[::-1, 0], y_w - p.head_height * q[::-1, 1]], 1)
    neck_m = side_m[side_m[:, 1] <= p.neck_level][::-1]  # neck up to the widest level
    neck_l = side_l[side_l[:, 1] <= p.neck_level]
    head_full = join(neck_m, dome_m, dome_l, neck_l)
    _, s_contact = first_exit(head_full, x_tl(head_full[:, 1]) - head_full[:, 0])
    head = cut(head_full, s_contact, float(arc_length(head_full)[-1]))
    shaft_m = side_m[side_m[:, 1] >= p.neck_level]
    shaft_l = side_l[side_l[:, 1] >= p.neck_level]
    polygon = join(shaft_m[::-1], head_full, shaft_l)
    diaphysis = Diaphysis(np.array([x_c, p.neck_level]), np.array([math.sin(ang), math.cos(ang)]),
                          full=18.0, none=-4.0)
    return FibulaShape(polygon, head, shaft_m, shaft_l, diaphysis)


def _patella(a: KneeAnatomy) -> np.ndarray:
    p = a.patella
    t = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    cy = p.lower_pole - p.height / 2
    x = p.x + p.halfwidth * np.cos(t) * (1.0 - p.taper * np.clip(np.sin(t), 0, None))
    return np.stack([x, cy + p.height / 2 * np.sin(t)], axis=1)


def _leg(a: KneeAnatomy, femur: FemurShape, tibia: TibiaShape, fibula: FibulaShape) -> np.ndarray:
    """Skin outline: thigh, knee and calf widths around the bone axes, always at least ``SKIN_MIN`` mm
    beyond every bone."""
    s = a.soft
    y = np.linspace(-FAR, FAR, 321)
    w = smoothstep((y + 40.0) / 80.0)
    centre = (1 - w) * femur.diaphysis.x_at(y) + w * tibia.diaphysis.x_at(y) + s.asymmetry
    knee = max(a.femur.condyle_halfwidth_medial, a.femur.condyle_halfwidth_lateral) + s.knee_margin
    hw = np.where(y < 0, knee + (s.thigh_halfwidth - knee) * smoothstep(-y / 200.0),
                  knee + (s.calf_halfwidth - knee) * smoothstep(y / 110.0))
    bones = (femur.polygon, tibia.polygon, fibula.polygon)
    right = np.maximum(centre + hw, _reach(bones, y, 1.0) + SKIN_MIN)
    left = -np.maximum(hw - centre, _reach(bones, y, -1.0) + SKIN_MIN)
    return np.vstack([np.stack([-_smooth(-left), y], 1), np.stack([_smooth(right), y], 1)[::-1]])


def _reach(polygons: tuple[np.ndarray, ...], y: np.ndarray, side: float) -> np.ndarray:
    """Furthest ``side * x`` of the polygons within each level of the (even) grid ``y``; -inf where none."""
    out = np.full(len(y), -np.inf)
    step = y[1] - y[0]
    for poly in polygons:
        dense = sample_even(poly, max(2, int(arc_length(poly)[-1] / (step / 2))))
        idx = np.clip(np.round((dense[:, 1] - y[0]) / step).astype(int), 0, len(y) - 1)
        np.maximum.at(out, idx, side * dense[:, 0])
    return out


def _smooth(x: np.ndarray, width: int = 9) -> np.ndarray:
    """Running maximum, then moving average, over 2 * width + 1 samples: smooth, and never below ``x``."""
    pad = np.pad(x, 2 * width, mode="edge")
    peak = np.lib.stride_tricks.sliding_window_view(pad, 2 * width + 1).max(axis=1)
    return np.convolve(peak, np.ones(2 * width + 1) / (2 * width + 1), mode="valid")


def _spur(base_a: np.ndarray, base_b: np.ndarray, outward: np.ndarray, size: float) -> np.ndarray:
    mid = (base_a + base_b) / 2
    tip = mid + size * outward / np.linalg.norm(outward)
    return np.array([base_a, tip, base_b, mid - 0.3 * (tip - mid)])


def _osteophytes(a: KneeAnatomy, femur: FemurShape, tibia: TibiaShape) -> tuple[np.ndarray, ...]:
    out = []
    t = a.tibia
    for size, side, sign in ((t.osteophyte_medial, tibia.side_medial, -1.0),
                             (t.osteophyte_lateral, tibia.side_lateral, 1.0)):
        if size > 0:
            p0, _ = crossing(side, 1.0)
            p1, _ = crossing(side, 1.0 + 2.2 * size)
            out.append(_spur(p0, p1, np.array([sign, -0.6]), size))
    if a.femur.osteophyte > 0:
        y_d = femur.side_medial[-1, 1]
        p0, _ = crossing(femur.side_medial, y_d - 9.0)
        p1, _ = crossing(femur.side_medial, y_d - 3.0)
        out.append(_spur(p0, p1, np.array([-1.0, 0.5]), a.femur.osteophyte))
    return tuple(out)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _implant(a: KneeAnatomy, femur: FemurShape, distal: _DistalFemur) -> ImplantShapes:
    imp, t = a.implant, a.tibia
    half = t.width / 2
    tray_bottom_y = -imp.cement_under_tray
    tray_top_y = tray_bottom_y - imp.tray_thickness
    x0, x1 = -half - imp.tray_overhang_medial, half + imp.tray_overhang_lateral
    tray_top = np.stack([np.linspace(x0, x1, 50), np.full(50, tray_top_y)], 1)
    tray_bottom = np.stack([np.linspace(x1, x0, 50), np.full(50, tray_bottom_y)], 1)

    # keel and stem along the tibial shaft axis, from the underside of the tray
    tilt = math.radians(t.tilt_deg)
    c, s = math.cos(tilt), math.sin(tilt)
    r, k = imp.stem_width / 2, imp.keel_width / 2

    def stem_side(sign: float) -> np.ndarray:
        v0 = (tray_bottom_y + sign * k * s) / c
        v = np.linspace(v0, imp.stem_length - r, 120)
        u = sign * np.where(v < imp.keel_depth, k + (r - k) * (v - v0) / (imp.keel_depth - v0), r)
        return np.stack([u, v], 1)

    th = np.linspace(math.pi, 0.0, 60)
    tip = np.stack([r * np.cos(th), imp.stem_length - r + r * np.sin(th)], 1)
    local = join(stem_side(-1.0), tip, stem_side(1.0)[::-1])
    centre = t.axis_offset + imp.stem_offset
    stem = np.stack([centre + local[:, 0] * c + local[:, 1] * s, -local[:, 0] * s + local[:, 1] * c], 1)

    # femoral component: the femur's own distal contour between the two flange tops
    y_fs = distal.flare_start_y
    s_tops = []
    for side, h in ((femur.side_medial, imp.flange_height_medial), (femur.side_lateral, imp.flange_height_lateral)):
        y_d = side[-1, 1]
        s_tops.append(crossing(side, y_d - min(h, y_d - y_fs - 4.0))[1])
    length = float(arc_length(femur.polygon)[-1])
    outline = cut(femur.polygon, s_tops[0], length - s_tops[1])  # the lateral side runs back up at the end
    u = np.linspace(0.0, 1.0, 60)
    closing = np.stack([outline[-1, 0] + (outline[0, 0] - outline[-1, 0]) * u,
                        outline[-1, 1] + (outline[0, 1] - outline[-1, 1]) * u - imp.flange_arch * np.sin(np.pi * u)],
                       1)
    y_high = min(distal.outer_medial[-1, 1], distal.outer_lateral[0, 1])
    return ImplantShapes(
        component_outline=outline, component_polygon=join(outline, closing)[:-1],
        tray_polygon=_rect(x0, x1, tray_top_y, tray_bottom_y), tray_top=tray_top, tray_bottom=tray_bottom,
        stem=stem, stem_polygon=stem, stem_cement_polygon=inset_polygon(stem, -imp.stem_cement),
        tray_cement_polygon=_rect(-half + 0.3, half - 0.3, tray_bottom_y, 0.0),
        insert_polygon=_rect(x0 + 1.0, x1 - 1.0, y_high - 2.0, tray_top_y),
    )


def build_shapes(a: KneeAnatomy) -> KneeShapes:
    """All outlines of one knee, in canonical millimetres."""
    t, imp = a.tibia, a.implant

    def surface(x: np.ndarray) -> np.ndarray:
        """What the condyles rest on: the plateau (pre-op) or the insert's top (post-op, with lift-off)."""
        x = np.asarray(x, dtype=np.float64)
        if imp is None:
            return _plateau_base(t, x)
        top = -(imp.cement_under_tray + imp.tray_thickness + imp.poly_thickness)
        return np.full(x.shape, top) - (x > a.femur.notch_x) * imp.liftoff

    femur, distal = _femur(a, surface)
    tibia = _tibia(t, _spine_scale(t, distal) if a.implant is None else 0.0)
    fibula = _fibula(a.fibula, tibia, t.tilt_deg)
    rim = None
    if t.posterior_rim_offset > 0:
        x = np.linspace(-t.width / 2 + 6.0, t.width / 2 - 6.0, 200)
        y = (1.0 - t.rim_flatness) * _plateau_base(t, x) + t.posterior_rim_offset
        rim = np.vstack([np.stack([x, y], 1), np.stack([x, y + t.rim_thickness], 1)[::-1]])
    return KneeShapes(
        reference_length=t.width, femur=femur, tibia=tibia, fibula=fibula, patella=_patella(a),
        leg=_leg(a, femur, tibia, fibula), osteophytes=_osteophytes(a, femur, tibia),
        subchondral=_subchondral(a, tibia, distal), posterior_rim=rim,
        implant=_implant(a, femur, distal) if a.implant is not None else None,
    )
