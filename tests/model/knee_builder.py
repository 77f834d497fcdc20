"""Hand-built landmark sets of both schemes with known panel values (``model.measurements``), and the image
transforms the tests apply to them (rotation, anisotropic pixels, right knees).

The knee is built in the left-knee millimetre frame (x lateral, y distal) from the angles themselves, without the
code under test: the tibial axis points straight down; the plateau line is turned from the horizontal by
``mpta - 90`` degrees (lateral corner up for an MPTA below 90); the condylar tangent is turned from the plateau line
by ``-jlca`` (lateral end up for a positive JLCA, i.e. the lines converge medially); the femoral axis is placed so
that the lateral angle between it (going proximally) and the tangent is ``aldfa``. Condyles are circles touching
the tangent exactly at their sampled tips, or (``flat_gaps``) flat-bottomed at a known height over the plateau.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.scheme import load_scheme

PLATEAU_HALF = 40.0  # mm, so the plateau width (reference length) is 80 mm
CONDYLE_X = 22.0  # condyle tips this far from the plateau middle, along the plateau line
RADIUS = 15.0


def unit(deg: float) -> np.ndarray:
    """Unit vector at ``deg`` degrees from +x (lateral) toward +y (distal)."""
    a = math.radians(deg)
    return np.array([math.cos(a), math.sin(a)])


@dataclass(frozen=True)
class KneeSpec:
    mpta: float = 87.0
    aldfa: float = 81.0
    jlca: float = 0.0
    gap: float = 5.0  # medial tip above the plateau line (mm)
    flat_gaps: tuple[float, float] | None = None  # (medial, lateral): flat condyle bottoms at these heights
    alpha: float = 96.0  # post-op femoral component angle (medial)
    beta: float = 90.0  # post-op tibial component angle (medial)

    @property
    def atfa(self) -> float:
        return self.mpta - self.aldfa - self.jlca


def _arc(centre: np.ndarray, normal: np.ndarray, along: np.ndarray, degrees: np.ndarray, r: float = RADIUS
         ) -> np.ndarray:
    t = np.radians(degrees)[:, None]
    return centre + r * (np.cos(t) * normal + np.sin(t) * along)


def _line(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def build(spec: KneeSpec, phase: str = "preop") -> np.ndarray:
    """All landmarks of ``phase``'s scheme in the left-knee millimetre frame, plateau middle at the origin."""
    scheme = load_scheme(phase)
    pts = np.zeros((scheme.n_points, 2))
    rows = np.arange(scheme.n_points, dtype=float)
    pts[:] = np.column_stack([-30 + 0.3 * rows, 60 + 0.5 * rows])  # filler (fibula, tibial flares, stem)
    tib = unit(90.0)
    plateau = unit(spec.mpta - 90.0)
    n_plateau = unit(spec.mpta)  # distal normal of the plateau line
    tangent = unit(spec.mpta - 90.0 - spec.jlca)
    n_tangent = unit(spec.mpta - spec.jlca)
    femoral = unit(spec.mpta - 90.0 - spec.jlca + 180.0 - spec.aldfa)  # proximal -> distal
    lateral_of_femur = unit(spec.mpta - 90.0 - spec.jlca + 90.0 - spec.aldfa)

    # Plateau: corners at +-40 along the plateau line, straight, spines (proximal bumps) in the middle.
    x = np.linspace(-PLATEAU_HALF, PLATEAU_HALF, 23)
    bump = -3.0 * np.clip(1.0 - np.abs(x) / 6.0, 0.0, None)
    pts[65:88] = x[:, None] * plateau + bump[:, None] * n_plateau
    # Condyles.
    tip_m = -CONDYLE_X * plateau - spec.gap * n_plateau
    tip_l = tip_m + (2 * CONDYLE_X / float(tangent @ plateau)) * tangent
    c_m, c_l = tip_m - RADIUS * n_tangent, tip_l - RADIUS * n_tangent
    pts[11:22] = _arc(c_m, n_tangent, tangent, np.linspace(-90.0, 0.0, 11))  # medial side down to its tip
    pts[44:50] = _arc(c_m, n_tangent, tangent, np.linspace(10.0, 60.0, 6))  # toward the notch
    pts[59:65] = _arc(c_l, n_tangent, tangent, np.linspace(-60.0, -10.0, 6))
    pts[33:44] = _arc(c_l, n_tangent, tangent, np.linspace(90.0, 0.0, 11))  # lateral side down to its tip
    if spec.flat_gaps is not None:  # flat bottoms parallel to the plateau line, centred on the tips
        for idx, tip_x, gap in ((list(range(18, 22)) + [44, 45, 46], -CONDYLE_X, spec.flat_gaps[0]),
                                ([61, 62, 63, 64] + [43, 42, 41], CONDYLE_X, spec.flat_gaps[1])):
            for k, off in zip(idx, np.linspace(-6.0, 6.0, len(idx))):  # in the order of the outline
                pts[k] = (tip_x + off) * plateau - gap * n_plateau
    edge_m = _arc(c_m, n_tangent, tangent, np.array([70.0]))[0]
    edge_l = _arc(c_l, n_tangent, tangent, np.array([-70.0]))[0]
    apex = (edge_m + edge_l) / 2 - 12.0 * n_tangent
    pts[50:59] = np.vstack([_line(edge_m, apex, 5), _line(apex, edge_l, 5)[1:]])
    if phase == "postop":
        _implant(pts, spec, femoral, n_plateau, apex)
    # Shafts: every level on the femoral axis, which runs through the notch midpoint (the ``femoral_notch`` role's, the
    # FNTS axis' distal point, so the two femoral axes coincide), and on the tibial one (through the origin).
    notch = pts[list(scheme.roles["femoral_notch"])].mean(axis=0)
    for level, med, lat in scheme.shaft_levels["femur"]:
        centre = notch - (10.0 + 60.0 * level) * femoral
        pts[med], pts[lat] = centre - 13.0 * lateral_of_femur, centre + 13.0 * lateral_of_femur
    for level, med, lat in scheme.shaft_levels["tibia"]:
        centre = 80.0 * level * tib
        pts[med], pts[lat] = centre - (13.0, 0.0), centre + (13.0, 0.0)
    return pts


def _implant(pts: np.ndarray, spec: KneeSpec, femoral: np.ndarray, n_plateau: np.ndarray, apex: np.ndarray) -> None:
    """Femoral component with runners touching a line at ``alpha`` from the femoral axis; tray at ``beta``."""
    ang_f = math.degrees(math.atan2(femoral[1], femoral[0]))
    line = unit(ang_f - spec.alpha)  # medial -> lateral
    n_line = unit(ang_f - spec.alpha + 90.0)
    tip_m = apex + 14.0 * n_line - 20.0 * line
    tip_l = tip_m + 40.0 * line
    c_m, c_l = tip_m - 14.0 * n_line, tip_l - 14.0 * n_line
    runner_m = _arc(c_m, n_line, line, np.array([-90.0, -65, -40, -20, 0, 15, 30, 45, 60]), 14.0)  # tip sampled
    runner_l = _arc(c_l, n_line, line, np.array([-60.0, -45, -30, -15, 0, 20, 40, 65, 90]), 14.0)
    box = _line(runner_m[-1], runner_l[0], 7)[1:-1] - 6.0 * n_line * np.sin(np.linspace(0, np.pi, 7)[1:-1])[:, None]
    top_m, top_l = runner_m[0] - 30.0 * n_line, runner_l[-1] - 30.0 * n_line
    pts[134:159] = np.vstack([top_m, runner_m, box, runner_l, top_l])
    pts[50:59] = np.vstack([_line(runner_m[-1], box[2], 5), _line(box[2], runner_l[0], 5)[1:]])
    tray = unit(spec.beta - 90.0)
    n_tray = unit(spec.beta)
    s = np.linspace(-35.0, 35.0, 6)[:, None]
    pts[159:165] = 2.0 * n_plateau - 2.0 * n_tray + s * tray  # upper surface, medial -> lateral
    pts[165:171] = 2.0 * n_plateau + 2.0 * n_tray + s[::-1] * tray  # lower surface, lateral -> medial


def to_image(pts_mm: np.ndarray, laterality: str = "L", rotation_deg: float = 0.0,
             spacing: tuple[float, float] = (1.0, 1.0), width_px: int = 10000) -> np.ndarray:
    """The landmarks as acquired: the knee rotated on the detector by ``rotation_deg`` (clockwise on screen),
    sampled with ``spacing = (row, column)`` mm pixels, and mirrored for a right knee."""
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    p = pts_mm @ rot.T + 300.0
    px = np.column_stack([p[:, 0] / spacing[1], p[:, 1] / spacing[0]])
    if laterality == "R":
        px[:, 0] = (width_px - 1) - px[:, 0]
    return px
