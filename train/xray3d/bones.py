"""The 3D knee as solids with attenuation, each with its pose in the world (see ``anatomy`` for the frames).

``build_knee`` returns a ``KneeModel``: the materials to project (femur, tibia, fibula, patella, and post-op the
femoral component, tibial tray, stem with keel, cement), their local-to-world 4x4 poses, and the 3D points the
ground truth needs (shaft axes, the fibular neck). Bones have a cortical shell and a cancellous core; the tibial
plateau (tilt, posterior slope, concavities, spines) and the femoral notch are heightmap cuts; the femoral shaft
bows forward and sideways; soft tissue is added in image space by ``detector`` from the projected limb axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from train.xray3d.anatomy import Femur3D, Implant3D, Knee3D, Tibia3D
from train.xray3d.solids import Box, Cut, Ellipsoid, Material, Solid, Tube

SHAFT_EXTENT = 3.2  # bones are modelled this many plateau widths from the joint


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def rigid(rot: np.ndarray | None = None, t: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0)) -> np.ndarray:
    m = np.eye(4)
    if rot is not None:
        m[:3, :3] = rot
    m[:3, 3] = t
    return m


def about(rot: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotation about a point, as a 4x4 matrix."""
    return rigid(None, centre) @ rigid(rot) @ rigid(None, -np.asarray(centre))


def transform(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


# ---------------------------------------------------------------- tibia (frame K)

def tibia_extent(t: Tibia3D, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Medial and lateral x, antero-posterior centre and half-depth of the tibia's outer surface at levels ``y``."""
    y = np.asarray(y, np.float64)
    half = t.width / 2
    length = SHAFT_EXTENT * t.width
    bow = t.coronal_bow * (np.clip(y, 0, None) / length) ** 2
    shaft_m = t.shaft_offset - t.shaft_halfwidth + bow
    shaft_l = t.shaft_offset + t.shaft_halfwidth + bow
    s = np.clip((y - 2.5) / (t.flare_end - 2.5), 0.0, 1.0)
    # S-shaped flare: the condyles' sides drop nearly vertically below the rim, curve in, and meet the shaft.
    med = shaft_m + (-half - shaft_m) * 0.5 * (1 + np.cos(np.pi * s**t.flare_power_medial))
    lat = shaft_l + (half - shaft_l) * 0.5 * (1 + np.cos(np.pi * s**t.flare_power_lateral))
    top = np.interp(y, [-16.0, -1.0, 2.5], [6.0, 1.2, 0.0])  # the rounded rim above the widest level
    med = np.where(y < 2.5, -half + top, med)
    lat = np.where(y < 2.5, half - top, lat)
    cz = 2.0 * s
    az = t.plateau_halfdepth + (t.shaft_halfdepth - t.plateau_halfdepth) * s
    az = np.where(y < 2.5, t.plateau_halfdepth - 0.5 * top, az)
    return med, lat, cz, az


def _tube_from_extent(levels: np.ndarray, med: np.ndarray, lat: np.ndarray, cz: np.ndarray, az: np.ndarray,
                      inset: np.ndarray | float = 0.0) -> Tube:
    inset = np.broadcast_to(inset, levels.shape)
    ax = np.maximum((lat - med) / 2 - inset, 0.5)
    return Tube(levels, (med + lat) / 2, cz, ax, np.maximum(az - inset, 0.5))


def plateau_surface(t: Tibia3D) -> callable:
    """Heightmap y(x, z) of the native tibial plateau (distal positive)."""
    tilt = math.tan(math.radians(90.0 - t.mpta_deg))
    slope = math.tan(math.radians(t.posterior_slope_deg))
    q = t.width / 4

    def surface(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        y = -x * tilt - z * slope
        bowl_m = 1 - ((x + q) / (1.1 * q)) ** 2 - (z / (0.8 * t.plateau_halfdepth)) ** 2
        bowl_l = 1 - ((x - q) / (1.1 * q)) ** 2 - (z / (0.8 * t.plateau_halfdepth)) ** 2
        y = y + t.medial_depth * np.clip(bowl_m, 0, None) + t.lateral_depth * np.clip(bowl_l, 0, None)
        for sx, h in ((t.spine_medial_x, t.spine_medial_height), (t.spine_lateral_x, t.spine_lateral_height)):
            y = y - h * np.exp(-((x - sx) ** 2) / (2 * t.spine_sigma**2) - (z / 10.0) ** 2)
        return y

    return surface


def _tibia(k: Knee3D, cut_level: float | None, cut_tilt_deg: float) -> Material:
    t = k.tibia
    levels = np.concatenate([[-16.0, -1.0, 2.5], np.linspace(2.5, t.flare_end, 12)[1:],
                             np.linspace(t.flare_end, SHAFT_EXTENT * t.width, 6)[1:]])
    med, lat, cz, az = tibia_extent(t, levels)
    s = np.clip((levels - 2.5) / (t.flare_end - 2.5), 0.0, 1.0)
    cortex = t.cortex_metaphysis + (t.cortex_shaft - t.cortex_metaphysis) * s**2
    if cut_level is None:
        surface = plateau_surface(t)

        def core_surface(x, z):
            return surface(x, z) + t.subchondral
    else:
        tilt = math.tan(math.radians(cut_tilt_deg))

        def surface(x, z):
            return cut_level + x * tilt

        def core_surface(x, z):
            return surface(x, z) + 1.0
    band = (-25.0, 30.0) if cut_level is None else (cut_level - 8.0, cut_level + 10.0)
    outer = Solid([_tube_from_extent(levels, med, lat, cz, az)], cuts=[Cut(surface, "below", band)])
    core = Solid([_tube_from_extent(levels, med, lat, cz, az, cortex)], cuts=[Cut(core_surface, "below", band)])
    return Material("tibia", outer, k.mu_cortex, core, k.mu_cancellous)


def _fibula(k: Knee3D) -> tuple[Material, np.ndarray]:
    f, t = k.fibula, k.tibia
    hy = f.apex_below + f.head_ry
    _, lat, _, _ = tibia_extent(t, np.array([hy]))
    hx = float(lat[0]) - f.overlap + f.head_rx
    shaft_x = hx - 1.5
    neck = f.neck_below
    end = SHAFT_EXTENT * t.width
    tilt = math.tan(math.radians(f.tilt_deg))
    levels = np.array([hy, neck, neck + 20.0, end])
    cx = np.array([hx, shaft_x, shaft_x + 20.0 * tilt, shaft_x + (end - neck) * tilt])
    cz = np.full(4, f.head_z + 2.0)
    r = np.array([0.75 * f.head_rx, f.shaft_radius, f.shaft_radius, f.shaft_radius * 0.9])
    head = Ellipsoid((hx, hy, f.head_z), (f.head_rx, f.head_ry, f.head_rz))
    outer = Solid([head, Tube(levels, cx, cz, r, r)])
    inner = Solid([Ellipsoid((hx, hy, f.head_z), (f.head_rx - f.cortex, f.head_ry - f.cortex, f.head_rz - f.cortex)),
                   Tube(levels, cx, cz, r - f.cortex, r - f.cortex)])
    neck_point = np.array([shaft_x, neck, f.head_z + 2.0])
    return Material("fibula", outer, k.mu_cortex, inner, k.mu_cancellous), neck_point


# ---------------------------------------------------------------- femur (frame F)

@dataclass(frozen=True)
class CondyleLayout:
    medial_centre: np.ndarray  # (3,) F frame
    lateral_centre: np.ndarray
    tip_medial: float  # y of the distal tips
    tip_lateral: float
    roof: float  # notch apex y


def condyle_layout(f: Femur3D) -> CondyleLayout:
    x_m = -f.notch_halfwidth - f.condyle_rx_medial
    x_l = f.notch_halfwidth + f.condyle_rx_lateral
    tip_l = -(x_l - x_m) * math.tan(math.radians(90.0 - f.aldfa_deg))
    roof = min(0.0, tip_l) - f.notch_height
    return CondyleLayout(np.array([x_m, -f.condyle_ry, f.condyle_z]),
                         np.array([x_l, tip_l - f.condyle_ry, f.condyle_z]),
                         0.0, tip_l, roof)


def _femur_column(f: Femur3D, lay: CondyleLayout, width: float, inset: float, cortex_shaft: float) -> Tube:
    """The shaft, flare and distal metaphysis as one tube; its lower end follows the condyles' outer sides."""
    rx_m, rx_l, ry = f.condyle_rx_medial, f.condyle_rx_lateral, f.condyle_ry
    cm, cl = lay.medial_centre, lay.lateral_centre
    bottom = lay.roof + 0.55 * (0.5 * (lay.tip_medial + lay.tip_lateral) - lay.roof)
    top_centre = min(cm[1], cl[1])
    epi = top_centre - 6.0
    shaft_start = epi - f.flare_length
    far = -SHAFT_EXTENT * width
    low = np.linspace(epi, bottom, 8)

    def lobe_half(y: np.ndarray, cy: float, rx: float) -> np.ndarray:
        return rx * np.sqrt(np.clip(1 - ((y - cy) / ry) ** 2, 0.05, None))

    med_low = np.where(low < cm[1], cm[0] - rx_m - f.epicondyle_bulge, cm[0] - lobe_half(low, cm[1], rx_m) + 0.3)
    lat_low = np.where(low < cl[1], cl[0] + rx_l + f.epicondyle_bulge, cl[0] + lobe_half(low, cl[1], rx_l) - 0.3)
    flare = np.linspace(far, epi, 16)[:-1]
    s = np.clip((flare - shaft_start) / (epi - shaft_start), 0.0, 1.0)
    taper = f.shaft_taper * np.clip(-flare - 50, 0, None) / 100.0
    centre = f.shaft_offset + f.coronal_bow * (flare / far) ** 2
    hw = f.shaft_halfwidth - taper
    med_f = centre - hw + (med_low[0] - (centre - hw)) * s**f.flare_power
    lat_f = centre + hw + (lat_low[0] - (centre + hw)) * s**f.flare_power
    levels = np.concatenate([flare, low])
    med = np.concatenate([med_f, med_low])
    lat = np.concatenate([lat_f, lat_low])
    sag = f.sagittal_bow * (np.clip(-levels, 0, None) / -far) ** 2
    depth_low = f.condyle_rz * 0.92
    sl = np.clip((levels - shaft_start) / (epi - shaft_start), 0.0, 1.0)
    az = f.shaft_halfwidth * 0.95 + (depth_low - f.shaft_halfwidth * 0.95) * sl**1.5
    cz = sag + 0.6 * f.condyle_z * sl
    cortex = np.broadcast_to(inset, levels.shape) if cortex_shaft <= 0 else (
        f.cortex_metaphysis + (cortex_shaft - f.cortex_metaphysis) * (1 - sl) ** 2)
    ax = np.maximum((lat - med) / 2 - cortex, 0.5)
    return Tube(levels, (med + lat) / 2, cz, ax, np.maximum(az - cortex, 0.5))


def _notch_cut(f: Femur3D, lay: CondyleLayout, lowered: float) -> Cut:
    bottom = lay.roof + 0.55 * (0.5 * (lay.tip_medial + lay.tip_lateral) - lay.roof)

    def surface(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        r = np.clip(np.abs(x) / f.notch_halfwidth, 0.0, 1.0)
        return lay.roof + lowered + (bottom - lay.roof) * r**f.notch_power + np.where(r >= 1.0, 50.0, 0.0)

    return Cut(surface, "above", region=(lay.roof - 3.0, 1e9))


def _box_roof(imp: Implant3D, lay: CondyleLayout) -> float:
    """y of the femoral component's intercondylar box roof: ``box_height`` above its more distal runner's tip."""
    return max(lay.tip_medial, lay.tip_lateral) + imp.runner_margin - imp.box_height


def _box_cut(imp: Implant3D, lay: CondyleLayout) -> Box:
    """The bone the box cut removes (renderer 1.3): between the condyles' centres, from the component's box roof
    distally, through the whole depth. Under the component's runners it is hidden by metal anyway; in the box it
    would be bone that a posterior-stabilised knee no longer has, and whose faint edge, where the native notch is
    shallower than the box, is not where the radiograph shows the notch (its metal walls and roof)."""
    return Box((float(lay.medial_centre[0]), _box_roof(imp, lay), -1e3),
               (float(lay.lateral_centre[0]), max(lay.tip_medial, lay.tip_lateral) + 50.0, 1e3))


def _femur(k: Knee3D, lay: CondyleLayout) -> Material:
    f, w = k.femur, k.tibia.width
    lobes = [Ellipsoid(tuple(c), (rx, f.condyle_ry, f.condyle_rz))
             for c, rx in ((lay.medial_centre, f.condyle_rx_medial), (lay.lateral_centre, f.condyle_rx_lateral))]
    inset = f.cortex_metaphysis
    lobes_in = [Ellipsoid(tuple(c), (rx - inset, f.condyle_ry - inset, f.condyle_rz - inset))
                for c, rx in ((lay.medial_centre, f.condyle_rx_medial), (lay.lateral_centre, f.condyle_rx_lateral))]
    holes = [] if k.implant is None else [_box_cut(k.implant, lay)]
    outer = Solid([_femur_column(f, lay, w, 0.0, 0.0), *lobes], holes=holes, cuts=[_notch_cut(f, lay, 0.0)])
    core = Solid([_femur_column(f, lay, w, inset, f.cortex_shaft), *lobes_in], holes=holes,
                 cuts=[_notch_cut(f, lay, -inset)])
    return Material("femur", outer, k.mu_cortex, core, k.mu_cancellous)


def _patella(k: Knee3D, lay: CondyleLayout) -> Material:
    p = k.patella
    centre = (p.x, lay.roof - p.lower_pole_above - p.ry + 10.0, p.z)
    outer = Solid([Ellipsoid(centre, (p.rx, p.ry, p.rz))])
    core = Solid([Ellipsoid(centre, (p.rx - 1.5, p.ry - 1.5, p.rz - 1.5))])
    return Material("patella", outer, k.mu_cortex, core, k.mu_cancellous, outline=False)


def _femoral_component(k: Knee3D, imp: Implant3D, lay: CondyleLayout) -> Material:
    f, m = k.femur, imp.runner_margin
    runners = [Ellipsoid(tuple(c), (rx + m, f.condyle_ry + m, f.condyle_rz + m))
               for c, rx in ((lay.medial_centre, f.condyle_rx_medial), (lay.lateral_centre, f.condyle_rx_lateral))]
    tip = max(lay.tip_medial, lay.tip_lateral) + m
    top = tip - imp.flange_height
    runner_top = min(lay.medial_centre[1], lay.lateral_centre[1]) + m  # up to the condyles' widest level
    roof = _box_roof(imp, lay)
    x0 = lay.medial_centre[0] - f.condyle_rx_medial - m + 0.5
    x1 = lay.lateral_centre[0] + f.condyle_rx_lateral + m - 0.5
    front = f.condyle_z + f.condyle_rz + m
    back = f.condyle_z - f.condyle_rz - m
    centre, half = 0.5 * (x0 + x1), 0.36 * (x1 - x0)
    # Distal and posterior condyles (runners), the chamfer block above the intercondylar box, the anterior flange.
    runners_cut = Solid(runners, cuts=[Cut(lambda x, z: np.full_like(x, runner_top), "below")])
    block = Box((x0, runner_top, back + 6.0), (x1, roof, front))
    flange = Box((centre - half, min(top, runner_top - 8.0), front - 7.0), (centre + half, runner_top + 1.0, front))
    return Material("femoral_component", Solid([runners_cut, block, flange]), imp.mu_component)


def _tibial_parts(k: Knee3D, imp: Implant3D) -> tuple[list[Material], float]:
    """Tray, stem with keel and cement in the tray's frame (origin at the cut's middle); returns the cut's width."""
    t = k.tibia
    med, lat, cz, az = (float(v[0]) for v in tibia_extent(t, np.array([imp.resection_below])))
    centre = (med + lat) / 2 + 0.5 * (imp.tray_overhang_lateral - imp.tray_overhang_medial)
    tray = Tube([-imp.tray_thickness, 0.0], [centre] * 2,
                [cz] * 2, [(lat - med) / 2 + 0.5 * (imp.tray_overhang_medial + imp.tray_overhang_lateral)] * 2,
                [az * 0.95] * 2)
    r, length = imp.stem_radius, imp.stem_length
    sx = t.shaft_offset * 0.5
    stem = Solid([Tube([0.0, length - r], [sx, sx], [0.0, 0.0], [r, 0.85 * r], [r, 0.85 * r]),
                  Ellipsoid((sx, length - r, 0.0), (0.85 * r, r, 0.85 * r)),
                  Box((sx - imp.keel_width / 2, 0.0, -2.5), (sx + imp.keel_width / 2, imp.keel_depth, 2.5))])
    rc = r + imp.cement
    cement = Solid([Tube([0.0, length - r], [sx, sx], [0.0, 0.0], [rc, 0.85 * rc], [rc, 0.85 * rc]),
                    Tube([0.0, 1.2], [(med + lat) / 2] * 2, [cz] * 2, [(lat - med) / 2 - 1.0] * 2, [az * 0.9] * 2)])
    mats = [Material("cement", cement, imp.mu_cement, outline=False),
            Material("tray", Solid([tray]), imp.mu_tray), Material("stem", stem, imp.mu_tray)]
    return mats, lat - med


# ---------------------------------------------------------------- assembly

@dataclass
class KneeModel:
    """Materials with their local-to-world poses, and 3D points for the ground truth (world mm)."""

    parts: list[tuple[Material, np.ndarray]]
    femoral_axis: np.ndarray  # (2, 3): diaphyseal centre points at 2.2 and 1.3 plateau widths above the joint
    tibial_axis: np.ndarray  # (2, 3): at 1.3 and 2.2 below
    knee_centre: np.ndarray  # (3,)
    fibular_neck: np.ndarray  # (3,)
    femur_pose: np.ndarray  # 4x4 F -> world
    tibia_pose: np.ndarray  # 4x4 K -> world
    limb_axis: np.ndarray  # (5, 3) points along the limb from thigh to calf, for the soft tissue


def _femur_placement(k: Knee3D, lay: CondyleLayout) -> np.ndarray:
    """4x4 F -> K: coronal rotation by the target aTFA, condyles resting at the joint spaces, then flexion."""
    t, f, pose, imp = k.tibia, k.femur, k.pose, k.implant
    rot = rot_z(k.atfa_deg) @ rot_y(pose.femur_rotation_deg)
    margin = imp.runner_margin if imp is not None else 0.0
    tips = np.array([[lay.medial_centre[0], lay.tip_medial + margin, f.condyle_z],
                     [lay.lateral_centre[0], lay.tip_lateral + margin, f.condyle_z]])
    placed = tips @ rot.T
    spine_mid = 0.5 * (t.spine_medial_x + t.spine_lateral_x)
    notch_bottom = rot @ np.array([0.0, 0.0, f.condyle_z])
    tx = spine_mid - notch_bottom[0]
    xs = placed[:, 0] + tx
    if imp is None:
        surface = plateau_surface(t)(xs, np.full(2, f.condyle_z * 0.5))
        gaps = np.full(2, pose.gap_min)
    else:
        tilt = math.tan(math.radians(imp.tray_tilt_deg))
        surface = imp.resection_below + xs * tilt - imp.tray_thickness
        gaps = imp.insert_thickness + np.array([0.0, imp.liftoff])
    ty = float(np.min(surface - gaps - placed[:, 1]))
    place = rigid(rot, (tx, ty, 0.0))
    centre = transform(place, lay.medial_centre * [0, 1, 1])  # on the flexion axis, between the condyles
    return about(rot_x(-pose.flexion_deg), centre) @ place


def build_knee(k: Knee3D) -> KneeModel:
    t, f, pose, imp = k.tibia, k.femur, k.pose, k.implant
    lay = condyle_layout(f)
    femur_in_k = _femur_placement(k, lay)
    limb = rigid(rot_z(pose.inplane_deg) @ rot_x(pose.tibia_tilt_deg) @ rot_y(pose.rotation_deg),
                 (0.0, 0.0, pose.knee_height))
    tibia_pose, femur_pose = limb, limb @ femur_in_k
    fib, neck = _fibula(k)
    parts: list[tuple[Material, np.ndarray]] = [
        (_femur(k, lay), femur_pose), (_patella(k, lay), femur_pose), (fib, tibia_pose),
    ]
    if imp is None:
        parts.insert(1, (_tibia(k, None, 0.0), tibia_pose))
    else:
        parts.insert(1, (_tibia(k, imp.resection_below, imp.tray_tilt_deg), tibia_pose))
        tray_pose = tibia_pose @ rigid(rot_z(imp.tray_tilt_deg), (0.0, imp.resection_below, 0.0))
        mats, _ = _tibial_parts(k, imp)
        parts += [(m, tray_pose) for m in mats]
        parts.append((_femoral_component(k, imp, lay), femur_pose))
    w = t.width
    # Diaphyseal axes: the shafts' centre lines (bows included) between 1.3 and 2.2 widths from the joint.
    f_levels = np.array([-2.2 * w, -1.3 * w]) + lay.tip_medial
    col = _femur_column(f, lay, w, 0.0, 0.0)
    fcx, fcz, _, _ = col.profile(f_levels)
    femoral_axis = transform(femur_pose, np.column_stack([fcx, f_levels, fcz]))
    t_levels = np.array([1.3 * w, 2.2 * w])
    med, lat, tcz, _ = tibia_extent(t, t_levels)
    tibial_axis = transform(tibia_pose, np.column_stack([(med + lat) / 2, t_levels, tcz]))
    knee_centre = transform(tibia_pose, np.zeros(3))
    limb_axis = np.vstack([
        transform(femur_pose, [[f.shaft_offset, -SHAFT_EXTENT * w, 0.0], [f.shaft_offset, -0.8 * w, 0.0]]),
        knee_centre[None],
        transform(tibia_pose, [[t.shaft_offset, 0.8 * w, 0.0], [t.shaft_offset, SHAFT_EXTENT * w, 0.0]]),
    ])
    return KneeModel(parts, femoral_axis, tibial_axis, knee_centre, transform(tibia_pose, neck),
                     femur_pose, tibia_pose, limb_axis)
