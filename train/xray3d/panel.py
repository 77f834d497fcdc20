"""Exact values of the measurement panel (``model.measurements``) for one projected knee, and its 3D design values.

"Projected" values follow the panel's definitions on the projected geometry itself rather than on the sampled
landmarks: the condylar (and femoral component) tangent touches the projected silhouettes (their outlines from
``outlines``), the axes are the projected 3D shaft axes (``KneeModel.femoral_axis``/``tibial_axis``, the
diaphyseal centre lines between 1.3 and 2.2 plateau widths), the tray line is the projection of the tray's own
medial-lateral axis, the plateau line joins the plateau corners (themselves placed on the outline by rule), and
the joint spaces are the smallest gaps between the dense femoral and tibial outlines. Comparing them with the
panel measured on the ground-truth landmarks shows how much the landmark sampling and the choice of shaft levels
move each value. "Design" values are what the 3D knee was built with (``anatomy``), before pose and projection.

Everything here is computed on the renderer's canvas (a left knee, square pixels of ``spacing`` mm at the
detector) from what the renderer already made; it draws no random numbers, so images and landmarks are unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from model.measurements import (JSW_CENTRAL_FRACTION, SchemeParts, aldfa_deg, distal_tangent, femoral_component_deg,
                                jlca_deg, minimum_gap, mpta_deg, tibial_component_deg)
from model.scheme import LandmarkScheme
from model.vocabulary import PREOP
from train.xray3d.anatomy import Knee3D
from train.xray3d.bones import KneeModel, rigid, rot_z, transform
from train.xray3d.projection import Detector


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices of ``points`` (all of them when too few or degenerate)."""
    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return points


def silhouette_tangent(outline: np.ndarray, split_x: float, distal: np.ndarray, across: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The two points where the common distal tangent touches an outline's parts medial and lateral of ``split_x``
    (measured along ``across``)."""
    x = outline @ across
    medial, lateral = _hull(outline[x < split_x]), _hull(outline[x >= split_x])
    both = np.vstack([medial, lateral])
    i, j = distal_tangent(both, np.arange(len(medial)), np.arange(len(medial), len(both)), distal)
    return both[i], both[j]


def design_values(knee: Knee3D) -> dict[str, float | None]:
    """The angles and gap the 3D knee was built with (the coronal plane, before pose and projection)."""
    imp = knee.implant
    pre = imp is None
    return {
        "atfa": knee.atfa_deg,
        "mpta": knee.tibia.mpta_deg if pre else None,
        "aldfa": knee.femur.aldfa_deg if pre else None,
        "jlca": knee.pose.jlca_deg if pre else None,
        "joint_space_3d_mm": knee.pose.gap_min if pre else None,  # both compartments, at the contact points
        # The femoral component follows the native condyles; the tray is tilted by its own angle.
        "femoral_component": None if pre else 180.0 - knee.femur.aldfa_deg,
        "tibial_component": None if pre else 90.0 + imp.tray_tilt_deg,
    }


def projected_values(scheme: LandmarkScheme, landmarks: np.ndarray, outlines: dict[str, np.ndarray],
                     model: KneeModel, knee: Knee3D, det: Detector, spacing: float) -> dict[str, float | None]:
    """The panel on the projected geometry (canvas pixels, left knee); widths in detector millimetres."""
    parts = SchemeParts.of(scheme)
    med, lat = landmarks[parts.plateau[0]], landmarks[parts.plateau[-1]]
    across = (lat - med) / np.linalg.norm(lat - med)
    distal = np.array([-across[1], across[0]])
    f_axis = det.project_points(model.femoral_axis)
    t_axis = det.project_points(model.tibial_axis)
    femoral, tibial, plateau = f_axis[1] - f_axis[0], t_axis[1] - t_axis[0], lat - med
    out: dict[str, float | None] = dict.fromkeys(
        ("mpta", "aldfa", "jlca", "jsw_medial", "jsw_lateral", "femoral_component", "tibial_component"))
    apex_x = float(landmarks[parts.notch_apex] @ across)
    if scheme.phase == PREOP:
        a, b = silhouette_tangent(outlines["femur"], apex_x, distal, across)
        out["mpta"] = mpta_deg(plateau, tibial)
        out["aldfa"] = aldfa_deg(b - a, femoral)
        out["jlca"] = jlca_deg(plateau, b - a)
        origin = (med + lat) / 2

        def canon(p: np.ndarray) -> np.ndarray:
            d = np.asarray(p, np.float64) - origin
            return np.column_stack([d @ across, d @ distal]) * spacing

        femur, tibia = canon(outlines["femur"]), canon(outlines["tibia"])
        for side, corner, edge in (("medial", parts.plateau[0], parts.notch[0]),
                                   ("lateral", parts.plateau[-1], parts.notch[-1])):
            x0, x1 = canon(landmarks[corner])[0, 0], canon(landmarks[edge])[0, 0]
            trim = (1.0 - JSW_CENTRAL_FRACTION) / 2 * (x1 - x0)
            gap = minimum_gap(femur, tibia, (x0 + trim, x1 - trim), samples=200)
            out[f"jsw_{side}"] = None if gap is None else gap.width
    else:
        a, b = silhouette_tangent(outlines["femoral_component"], apex_x, distal, across)
        out["femoral_component"] = femoral_component_deg(b - a, femoral)
        imp = knee.implant
        tray = model.tibia_pose @ rigid(rot_z(imp.tray_tilt_deg), (0.0, imp.resection_below, 0.0))
        ends = det.project_points(transform(tray, np.array([[-20.0, 0.0, 0.0], [20.0, 0.0, 0.0]])))
        out["tibial_component"] = tibial_component_deg(ends[1] - ends[0], tibial)
    return {k: None if v is None else float(v) for k, v in out.items()}
