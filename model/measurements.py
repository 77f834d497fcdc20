"""The knee alignment panel: every measurement of an AP knee radiograph, defined from the scheme's landmarks.

All measurements are taken in a *left-knee millimetre frame*: a right knee is mirrored first (as
``model.alignment`` does), so every sign is the same clinical sign for both knees, and pixel coordinates are
scaled by the (row, column) pixel spacing, so non-square pixels measure true angles. Without a spacing the
angles are measured in pixels (square pixels assumed) and no width in millimetres is given.

Lines (landmark curves and roles of ``model/schemes/*.json``; pairs are ``[medial, lateral]``):

- femoral anatomical axis: from the midpoint of the femoral shaft cortices at the more proximal chosen level to the
  midpoint of the intercondylar notch (the FNTS femoral axis of ``model.alignment``, adaptive ``ShaftLevels``
  respected): the axis as drawn on a knee film, shaft centre to notch centre, over about 1.3 plateau widths rather
  than the 0.5 between the two shaft levels, so a landmark's error tilts it less.
- tibial anatomical axis: through the midpoints of the tibial shaft cortices at the two chosen levels (the tibial
  axis of both aTFA methods).
- tibial plateau line: through the two plateau corners (the scheme's ``reference`` points).
- distal femoral condylar tangent: the line touching both condyles from below, i.e. the common tangent of the
  medial and lateral distal condyle outlines (curves ``medial_condyle_distal``/``lateral_condyle_distal`` with the
  condylar ends of ``femur_*_outline``) that leaves every condyle point proximal of it.
- femoral component line (post-op): the same tangent to the two distal runners of ``femoral_component`` (split
  at the intercondylar notch's apex).
- tibial tray line (post-op): the direction of the tray's upper and lower surfaces (``tibial_tray``), fitted by
  total least squares as two parallel lines.

Measurements (angles in degrees, widths in millimetres; varus negative, valgus positive throughout):

- ``atfa_fts``, ``atfa_fnts``: the anatomical tibiofemoral angle of ``model.alignment``.
- ``mpta``: medial proximal tibial angle, the medial angle between the tibial axis (going distally) and the plateau
  line; 90 for a plateau perpendicular to the axis, less when the medial plateau is lower (normal about 85-90).
- ``aldfa``: anatomical lateral distal femoral angle, the lateral angle between the femoral axis (going
  proximally) and the condylar tangent (normal about 79-83).
- ``jlca``: joint line convergence angle, from the plateau line to the condylar tangent, positive when the two
  lines converge medially (the lateral side opens, as in a varus knee), negative when they converge laterally.
  With these signs ``aTFA(FNTS) = MPTA - aLDFA - JLCA`` holds exactly.
- ``jsw_medial``, ``jsw_lateral``: minimum joint space width of each compartment, the shortest distance measured
  perpendicular to the plateau line (vertical in the joint's own frame) between the condyle's outline and the
  plateau's, over the central ``JSW_CENTRAL_FRACTION`` of the span from the plateau corner to the notch edge.
  Outlines that overlap by more than ``JSW_OVERLAP_TOLERANCE_MM`` (a flexed or tilted knee, the plateau's rims
  projected over the condyle) mean the joint space is not seen: not measurable.
- ``femoral_component``: the medial angle between the femoral axis (going proximally) and the component line
  (Knee Society alpha angle, about 95-97 when aligned to the mechanical axis); its ``deviation_deg`` is
  ``alpha - 90``, the component's valgus (+) or varus (-) from perpendicular to the femoral anatomical axis.
- ``tibial_component``: the medial angle between the tibial axis (going distally) and the tray line (Knee Society
  beta angle, 90 when perpendicular); ``deviation_deg = beta - 90``, valgus (+) or varus (-).

Every measurement has its own status: ``ok``, ``low_confidence`` (with why) or ``not_measurable`` (with why, and
no value: pre-op knees have no components, post-op knees no native joint line or joint space, an axis without
enough exposed shaft, a landmark outside the image, outlines that hide the joint space, no pixel spacing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from model.alignment import ATFA_METHODS, AlignmentResult, ShaftLevels, compute_alignment
from model.scheme import LandmarkScheme
from model.vocabulary import PHASE_NAMES, PHASES, POSTOP, PREOP

STATUS_OK = "ok"
STATUS_LOW_CONFIDENCE = "low_confidence"
STATUS_NOT_MEASURABLE = "not_measurable"
STATUSES = (STATUS_OK, STATUS_LOW_CONFIDENCE, STATUS_NOT_MEASURABLE)

# Pixel spacing origins (``model.preprocess``): a calibrated PixelSpacing, or only the detector's.
SPACING_CALIBRATED = "PixelSpacing"
SPACING_DETECTOR = "ImagerPixelSpacing"
DETECTOR_SPACING_NOTE = ("detector pixel spacing (ImagerPixelSpacing) only: millimetres at the detector, not "
                         "corrected for the radiographic magnification (typically 5-15 % larger than at the knee)")

JSW_CENTRAL_FRACTION = 0.7  # of each compartment's span from the plateau corner to the notch edge
JSW_OVERLAP_TOLERANCE_MM = 0.5  # outlines overlapping by up to this read as bone on bone (0 mm)
JSW_SAMPLES = 48  # positions across each compartment
PANEL_FEMORAL_AXIS = "fnts"  # the panel's femoral axis: shaft centre to notch centre ("fts": two shaft levels)


@dataclass(frozen=True)
class MeasurementSpec:
    """One measurement of the panel: its name in the JSON, label, unit, the phases it applies to, plausible range."""

    name: str
    label: str  # short label for tables and overlays
    title: str  # full name
    unit: str  # "deg" | "mm"
    phases: tuple[str, ...]
    plausible: tuple[float, float]  # values outside are flagged low-confidence
    bones: tuple[str, ...] = ()  # the bone axes it needs


PRE, POST, BOTH = (PREOP,), (POSTOP,), PHASE_NAMES
SPECS: dict[str, MeasurementSpec] = {s.name: s for s in (
    MeasurementSpec("atfa_fts", "aTFA (FTS)", "Anatomical tibiofemoral angle, femoral and tibial shafts", "deg",
                    BOTH, (-35.0, 35.0), ("femur", "tibia")),
    MeasurementSpec("atfa_fnts", "aTFA (FNTS)", "Anatomical tibiofemoral angle, femoral notch and tibial shaft",
                    "deg", BOTH, (-35.0, 35.0), ("femur", "tibia")),
    MeasurementSpec("jlca", "JLCA", "Joint line convergence angle", "deg", PRE, (-20.0, 20.0)),
    MeasurementSpec("aldfa", "aLDFA", "Anatomical lateral distal femoral angle", "deg", PRE, (60.0, 110.0),
                    ("femur",)),
    MeasurementSpec("mpta", "MPTA", "Medial proximal tibial angle", "deg", PRE, (65.0, 115.0), ("tibia",)),
    MeasurementSpec("jsw_medial", "JSW med", "Minimum joint space width, medial compartment", "mm", PRE,
                    (0.0, 20.0)),
    MeasurementSpec("jsw_lateral", "JSW lat", "Minimum joint space width, lateral compartment", "mm", PRE,
                    (0.0, 20.0)),
    MeasurementSpec("femoral_component", "Fem comp", "Femoral component angle (alpha)", "deg", POST,
                    (70.0, 125.0), ("femur",)),
    MeasurementSpec("tibial_component", "Tib comp", "Tibial component angle (beta)", "deg", POST, (65.0, 115.0),
                    ("tibia",)),
)}
MEASUREMENT_NAMES = tuple(SPECS)
ALWAYS_MEASURED = ("atfa_fts", "atfa_fnts")  # the aTFA is always reported, whatever the configuration

Point = tuple[float, float]
Segment = tuple[Point, Point]


@dataclass(frozen=True)
class ReferenceRange:
    """A site's reference range of one measurement (inclusive), e.g. MPTA 85-90 degrees."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"a reference range needs finite low <= high, got {self.low}-{self.high}")

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self, unit: str) -> str:
        """E.g. "85 to 90°", "-2 to 2°", "3 to 7 mm"."""
        symbol = "°" if unit == "deg" else f" {unit}"
        return f"{self.low:g} to {self.high:g}{symbol}"


@dataclass(frozen=True)
class Measurement:
    """One measurement's result. ``value`` is None exactly when ``status`` is ``not_measurable``."""

    name: str
    value: float | None
    status: str
    reason: str | None = None
    lines: tuple[Segment, ...] = ()  # the lines it is taken between, in the source image's pixels
    landmarks: tuple[int, ...] = ()  # the landmarks it is computed from
    deviation_deg: float | None = None  # components: valgus (+) / varus (-) from perpendicular to the axis
    site_range: ReferenceRange | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown measurement status {self.status!r}")
        if (self.value is None) != (self.status == STATUS_NOT_MEASURABLE):
            raise ValueError(f"{self.name}: a value is given exactly when the measurement is measurable")

    @property
    def spec(self) -> MeasurementSpec:
        return SPECS[self.name]

    @property
    def unit(self) -> str:
        return self.spec.unit

    @property
    def outside_site_range(self) -> bool | None:
        """True when the site's range is configured and the value lies outside it; None without range or value."""
        if self.site_range is None or self.value is None:
            return None
        return not self.site_range.contains(self.value)

    def range_note(self) -> str | None:
        """The wording shown for a value outside the site's range (never a diagnosis)."""
        if not self.outside_site_range:
            return None
        return f"outside the site's range ({self.site_range.describe(self.unit)})"

    def to_json(self) -> dict:
        out = {"value": None if self.value is None else round(self.value, 2), "unit": self.unit,
               "status": self.status, "reason": self.reason}
        if self.deviation_deg is not None:
            out["varus_valgus_deg"] = round(self.deviation_deg, 2)
        if self.site_range is not None:
            out["site_range"] = [self.site_range.low, self.site_range.high]
            out["outside_site_range"] = self.outside_site_range
        return out


def not_measurable(name: str, reason: str, landmarks: Iterable[int] = ()) -> Measurement:
    return Measurement(name, None, STATUS_NOT_MEASURABLE, reason, landmarks=tuple(sorted(set(landmarks))))


def resolve_names(names: Iterable[str] | None) -> tuple[str, ...]:
    """The measurements to compute, in panel order, the aTFA always included; unknown names raise ValueError."""
    wanted = set(MEASUREMENT_NAMES if names is None else names)
    unknown = wanted - set(SPECS)
    if unknown:
        raise ValueError(f"unknown measurement(s) {sorted(unknown)}; known: {', '.join(MEASUREMENT_NAMES)}")
    wanted |= set(ALWAYS_MEASURED)
    return tuple(n for n in MEASUREMENT_NAMES if n in wanted)


# ---------------------------------------------------------------------------------------------- geometry


def _angle(v: np.ndarray) -> float:
    """Direction of ``v`` in degrees (x lateral, y distal; positive turns from lateral toward distal)."""
    return math.degrees(math.atan2(v[1], v[0]))


def _wrap(deg: float) -> float:
    """Into (-180, 180]."""
    out = (deg + 180.0) % 360.0 - 180.0
    return 180.0 if out == -180.0 else out


# The angles from direction vectors in the left-knee frame (any common scale; axes may point either way along
# their bone only as named: femoral and tibial axes proximal -> distal, the other lines medial -> lateral).


def mpta_deg(plateau: np.ndarray, tibial_axis: np.ndarray) -> float:
    return 180.0 + _wrap(_angle(plateau) - _angle(tibial_axis))


def aldfa_deg(condylar_tangent: np.ndarray, femoral_axis: np.ndarray) -> float:
    return 180.0 + _wrap(_angle(condylar_tangent) - _angle(femoral_axis))


def jlca_deg(plateau: np.ndarray, condylar_tangent: np.ndarray) -> float:
    return _wrap(_angle(plateau) - _angle(condylar_tangent))


def femoral_component_deg(component_line: np.ndarray, femoral_axis: np.ndarray) -> float:
    """Knee Society alpha: the medial angle, 180 minus the lateral one."""
    return 180.0 - aldfa_deg(component_line, femoral_axis)


def tibial_component_deg(tray_line: np.ndarray, tibial_axis: np.ndarray) -> float:
    """Knee Society beta: the medial angle, as the MPTA."""
    return mpta_deg(tray_line, tibial_axis)


@dataclass(frozen=True)
class KneeFrame:
    """Landmarks in the left-knee millimetre frame (mirrored for a right knee, scaled by the pixel spacing)."""

    scale: np.ndarray  # per axis: pixels -> left-knee units (x negated for a right knee)
    pts: np.ndarray  # (N, 2) left-knee units

    @classmethod
    def of(cls, points: np.ndarray, laterality: str, spacing: tuple[float, float] | None) -> "KneeFrame":
        if laterality not in ("L", "R"):
            raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
        scale = np.array([-1.0 if laterality == "R" else 1.0, 1.0])
        if spacing is not None:
            scale = scale * np.array([spacing[1], spacing[0]], dtype=np.float64)
        return cls(scale, np.asarray(points, np.float64) * scale)

    def to_pixels(self, p: np.ndarray) -> Point:
        q = np.asarray(p, np.float64) / self.scale
        return float(q[0]), float(q[1])

    def segment(self, a: np.ndarray, b: np.ndarray) -> Segment:
        return self.to_pixels(a), self.to_pixels(b)


def distal_tangent(points: np.ndarray, medial: np.ndarray, lateral: np.ndarray, distal: np.ndarray
                   ) -> tuple[int, int]:
    """Indices ``(i, j)`` into ``points`` (``i`` in ``medial``, ``j`` in ``lateral``) of the common tangent that
    leaves every point of both sets on its proximal side (``distal``: the distal direction). Among all medial-lateral
    pairs it is the one whose line has the smallest largest distal excess (zero for the true tangent)."""
    med, lat = np.asarray(medial), np.asarray(lateral)
    both = points[np.concatenate([med, lat])]
    a = points[med][:, None, :]  # (M, 1, 2)
    b = points[lat][None, :, :]  # (1, K, 2)
    d = b - a
    n = np.stack([-d[..., 1], d[..., 0]], axis=-1)
    n = n * np.where((n @ distal) < 0, -1.0, 1.0)[..., None]  # normals pointing distally
    norm = np.linalg.norm(n, axis=-1)
    n = n / np.where(norm > 0, norm, 1.0)[..., None]
    excess = np.einsum("mkc,pc->mkp", n, both) - np.einsum("mkc,mkc->mk", n, np.broadcast_to(a, n.shape))[..., None]
    worst = np.where(norm > 0, excess.max(axis=-1), np.inf)
    i, j = np.unravel_index(int(np.argmin(worst)), worst.shape)
    return int(med[i]), int(lat[j])


def parallel_lines_direction(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Unit direction of two parallel lines fitted by total least squares to two point sets (each centred on its
    own mean), oriented toward +x."""
    centred = np.vstack([first - first.mean(0), second - second.mean(0)])
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    d = vt[0]
    return d if d[0] >= 0 else -d


def _crossings(polyline: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``x`` of ``xs``: the largest and the smallest y where the polyline crosses the vertical at x
    (NaN where it does not)."""
    a, b = polyline[:-1], polyline[1:]
    lo = np.minimum(a[:, 0], b[:, 0])[None]
    hi = np.maximum(a[:, 0], b[:, 0])[None]
    x = xs[:, None]
    dx = (b[:, 0] - a[:, 0])[None]
    hit = (x >= lo) & (x <= hi) & (dx != 0)
    t = np.where(hit, (x - a[None, :, 0]) / np.where(dx != 0, dx, 1.0), 0.0)
    y = a[None, :, 1] + t * (b[None, :, 1] - a[None, :, 1])
    with np.errstate(invalid="ignore"):
        top = np.where(hit, y, -np.inf).max(axis=1)
        bottom = np.where(hit, y, np.inf).min(axis=1)
    top[~np.isfinite(top)] = np.nan
    bottom[~np.isfinite(bottom)] = np.nan
    return top, bottom


@dataclass(frozen=True)
class JointGap:
    width: float  # millimetres (or the frame's units); negative where the outlines overlap
    condyle: np.ndarray  # the two ends of the narrowest gap, in the frame given
    plateau: np.ndarray


def minimum_gap(condyle: np.ndarray, plateau: np.ndarray, x_range: tuple[float, float],
                samples: int = JSW_SAMPLES) -> JointGap | None:
    """Smallest vertical gap (y grows distally) between the condyle outline above and the plateau outline below, over
    ``x_range``, both polylines given in a frame whose x runs along the plateau line; None where they never face."""
    xs = np.linspace(min(x_range), max(x_range), samples)
    condyle_y, _ = _crossings(condyle, xs)  # the condyle's most distal crossing
    _, plateau_y = _crossings(plateau, xs)  # the plateau's most proximal crossing
    gap = plateau_y - condyle_y
    if not np.any(np.isfinite(gap)):
        return None
    k = int(np.nanargmin(gap))
    return JointGap(float(gap[k]), np.array([xs[k], condyle_y[k]]), np.array([xs[k], plateau_y[k]]))


# ---------------------------------------------------------------------------------------------- scheme parts


@dataclass(frozen=True)
class SchemeParts:
    """The landmark index sets the measurements use, read from the scheme's curves and roles."""

    plateau: tuple[int, ...]  # medial corner ... lateral corner
    condyle_medial: tuple[int, ...]  # flare and condyle of the medial outline, then the distal contour
    condyle_lateral: tuple[int, ...]
    notch: tuple[int, ...]  # medial edge ... apex ... lateral edge
    component: tuple[int, ...] = ()
    tray_upper: tuple[int, ...] = ()
    tray_lower: tuple[int, ...] = ()

    @property
    def notch_apex(self) -> int:
        return self.notch[len(self.notch) // 2]

    @classmethod
    def of(cls, scheme: LandmarkScheme) -> "SchemeParts":
        shaft = {i for rows in scheme.shaft_levels.values() for _, m, lt in rows for i in (m, lt)}
        shaft |= {i for role in ("femoral_shaft_proximal", "femoral_shaft_distal") for i in scheme.roles[role]}

        def curve(name: str) -> tuple[int, ...]:
            return tuple(scheme.curve(name).indices)

        condyle_m = tuple(i for i in curve("femur_medial_outline") if i not in shaft) + curve("medial_condyle_distal")
        condyle_l = curve("lateral_condyle_distal") + tuple(
            i for i in reversed(curve("femur_lateral_outline")) if i not in shaft)
        parts = dict(plateau=curve("tibial_plateau"), condyle_medial=condyle_m, condyle_lateral=condyle_l,
                     notch=curve("intercondylar_notch"))
        if PHASES[scheme.phase].has_implants:
            tray = curve("tibial_tray")
            half = len(tray) // 2
            parts.update(component=curve("femoral_component"), tray_upper=tray[:half], tray_lower=tray[half:])
        return cls(**parts)


# ---------------------------------------------------------------------------------------------- the panel


@dataclass
class _Context:
    frame: KneeFrame
    scheme: LandmarkScheme
    parts: SchemeParts
    alignment: AlignmentResult
    axis_landmarks: dict[str, tuple[int, ...]]  # axis -> its landmarks (``_axis_landmarks``)
    femoral_axis: str  # the femoral axis of the panel's angles: "fnts" or "fts"
    unmeasurable_axes: Mapping[str, str]
    visible: np.ndarray | None
    spacing_known: bool
    spacing_source: str | None

    def hidden(self, indices: Iterable[int]) -> str | None:
        """The reason when a landmark of ``indices`` is not in the image (None when all are)."""
        if self.visible is None:
            return None
        missing = [i for i in indices if not self.visible[i]]
        if not missing:
            return None
        names = ", ".join(self.scheme.point_names[i] for i in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return f"landmarks outside the image ({names}{more})"

    def axis(self, bone: str) -> tuple[np.ndarray, np.ndarray, Segment]:
        """Proximal and distal points of a bone's anatomical axis as the panel takes it (frame units; the femur's
        is ``femoral_axis``'s) and its segment in pixels."""
        ax = self.alignment.femoral_axis(self.femoral_axis) if bone == "femur" else self.alignment.tibial_axis
        a = np.array(ax.proximal) * self.frame.scale
        b = np.array(ax.distal) * self.frame.scale
        return a, b, (ax.proximal, ax.distal)

    def plateau_line(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.frame.pts
        return p[self.parts.plateau[0]], p[self.parts.plateau[-1]]

    def distal_direction(self) -> np.ndarray:
        med, lat = self.plateau_line()
        x = (lat - med) / max(float(np.linalg.norm(lat - med)), 1e-12)
        return np.array([-x[1], x[0]])

    @cached_property
    def condylar_tangent(self) -> tuple[int, int]:
        return distal_tangent(self.frame.pts, np.array(self.parts.condyle_medial),
                              np.array(self.parts.condyle_lateral), self.distal_direction())

    def component_tangent(self) -> tuple[int, int]:
        comp = np.array(self.parts.component)
        apex_x = self.frame.pts[self.parts.notch_apex] @ self._across()
        x = self.frame.pts[comp] @ self._across()
        medial, lateral = comp[x < apex_x], comp[x >= apex_x]
        if not len(medial) or not len(lateral):
            raise _NotMeasurable("the femoral component's outline does not reach both sides of the notch")
        return distal_tangent(self.frame.pts, medial, lateral, self.distal_direction())

    def _across(self) -> np.ndarray:
        med, lat = self.plateau_line()
        return (lat - med) / max(float(np.linalg.norm(lat - med)), 1e-12)


class _NotMeasurable(Exception):
    """Raised inside one measurement: it is not measurable, for the reason given."""


def _check_axes(ctx: _Context, spec: MeasurementSpec) -> list[int]:
    """The landmarks of the axes ``spec`` uses (each aTFA its own femoral axis, the rest the panel's); raises when one
    of its bones has no axis."""
    used = []
    for bone in spec.bones:
        if bone in ctx.unmeasurable_axes:
            raise _NotMeasurable(f"{bone} axis not measurable: {ctx.unmeasurable_axes[bone]}")
        if bone == "femur":
            bone = spec.name.removeprefix("atfa_") if spec.name.startswith("atfa_") else ctx.femoral_axis
        used += ctx.axis_landmarks[bone]
    return used


def _angle_measurement(ctx: _Context, spec: MeasurementSpec) -> tuple[float, list[int], list[Segment], float | None]:
    """Value, landmarks, lines and deviation of the angle ``spec`` names."""
    pts, name = ctx.frame.pts, spec.name
    used = _check_axes(ctx, spec)
    med, lat = ctx.parts.plateau[0], ctx.parts.plateau[-1]
    plateau_dir = pts[lat] - pts[med]
    plateau_seg = ctx.frame.segment(pts[med], pts[lat])
    if name in ("atfa_fts", "atfa_fnts"):
        value = ctx.alignment.atfa_fts_deg if name == "atfa_fts" else ctx.alignment.atfa_fnts_deg
        ax = ctx.alignment.femoral_axis_fts if name == "atfa_fts" else ctx.alignment.femoral_axis_fnts
        t = ctx.alignment.tibial_axis
        return value, used, [(ax.proximal, ax.distal), (t.proximal, t.distal)], None
    if name == "mpta":
        a, b, seg = ctx.axis("tibia")
        return mpta_deg(plateau_dir, b - a), used + [med, lat], [seg, plateau_seg], None
    if name in ("aldfa", "jlca"):
        i, j = ctx.condylar_tangent
        tangent = pts[j] - pts[i]
        used += [*ctx.parts.condyle_medial, *ctx.parts.condyle_lateral]
        tangent_seg = ctx.frame.segment(pts[i], pts[j])
        if name == "jlca":
            return jlca_deg(plateau_dir, tangent), used + [med, lat], [tangent_seg, plateau_seg], None
        a, b, seg = ctx.axis("femur")
        return aldfa_deg(tangent, b - a), used, [seg, tangent_seg], None
    if name == "femoral_component":
        i, j = ctx.component_tangent()
        a, b, seg = ctx.axis("femur")
        alpha = femoral_component_deg(pts[j] - pts[i], b - a)
        used += [*ctx.parts.component, ctx.parts.notch_apex]
        return alpha, used, [seg, ctx.frame.segment(pts[i], pts[j])], alpha - 90.0
    if name == "tibial_component":
        upper, lower = pts[list(ctx.parts.tray_upper)], pts[list(ctx.parts.tray_lower)]
        d = parallel_lines_direction(upper, lower)
        a, b, seg = ctx.axis("tibia")
        beta = tibial_component_deg(d, b - a)
        centre = lower.mean(0)
        ends = sorted(float((p - centre) @ d) for p in lower)
        tray_seg = ctx.frame.segment(centre + ends[0] * d, centre + ends[-1] * d)
        return beta, used + [*ctx.parts.tray_upper, *ctx.parts.tray_lower], [seg, tray_seg], beta - 90.0
    raise KeyError(name)


def _jsw(ctx: _Context, side: str) -> tuple[float, list[int], list[Segment], str | None]:
    if not ctx.spacing_known:
        raise _NotMeasurable("pixel spacing unknown: no millimetres")
    pts, parts = ctx.frame.pts, ctx.parts
    med, lat = ctx.plateau_line()
    x_axis = (lat - med) / float(np.linalg.norm(lat - med))
    y_axis = np.array([-x_axis[1], x_axis[0]])
    origin = (med + lat) / 2

    def canon(idx) -> np.ndarray:
        d = pts[list(idx)] - origin
        return np.column_stack([d @ x_axis, d @ y_axis])

    if side == "medial":
        condyle_idx = (*parts.condyle_medial, parts.notch[0])
        corner, edge = parts.plateau[0], parts.notch[0]
    else:
        condyle_idx = (parts.notch[-1], *parts.condyle_lateral)
        corner, edge = parts.plateau[-1], parts.notch[-1]
    x0, x1 = float(canon([corner])[0, 0]), float(canon([edge])[0, 0])
    trim = (1.0 - JSW_CENTRAL_FRACTION) / 2 * (x1 - x0)
    gap = minimum_gap(canon(condyle_idx), canon(parts.plateau), (x0 + trim, x1 - trim))
    used = [*condyle_idx, *parts.plateau]
    if gap is None:
        raise _NotMeasurable(f"the {side} condyle and plateau outlines do not face each other")
    if gap.width < -JSW_OVERLAP_TOLERANCE_MM:
        raise _NotMeasurable(f"the {side} condyle and plateau outlines overlap by {-gap.width:.1f} mm: "
                             "joint space not seen")

    def back(p: np.ndarray) -> np.ndarray:
        return origin + p[0] * x_axis + p[1] * y_axis

    segment = ctx.frame.segment(back(gap.condyle), back(gap.plateau))
    note = DETECTOR_SPACING_NOTE if ctx.spacing_source == SPACING_DETECTOR else None
    return max(gap.width, 0.0), used, [segment], note


def _axis_landmarks(scheme: LandmarkScheme, levels: ShaftLevels) -> dict[str, tuple[int, ...]]:
    """The landmarks of each axis at ``levels`` (as ``model.alignment`` takes them): the femoral axes ``"fnts"`` (the
    proximal shaft pair and the notch) and ``"fts"`` (both shaft pairs), and ``"tibia"``."""
    if levels.fixed:
        pairs = {bone: [scheme.roles[f"{prefix}_shaft_{end}"] for end in ("proximal", "distal")]
                 for bone, prefix in (("femur", "femoral"), ("tibia", "tibial"))}
    else:
        pairs = {bone: [scheme.shaft_pair(bone, lv) for lv in getattr(levels, bone)] for bone in ("femur", "tibia")}
    return {"fnts": (*pairs["femur"][0], *scheme.roles["femoral_notch"]),
            "fts": tuple(i for pair in pairs["femur"] for i in pair),
            "tibia": tuple(i for pair in pairs["tibia"] for i in pair)}


def _phase_reason(spec: MeasurementSpec, phase: str) -> str | None:
    if phase in spec.phases:
        return None
    if phase == PREOP:
        return "no implant (pre-operative knee)"
    if spec.name.startswith("jsw"):
        return "post-operative knee: the joint space is the implant's insert"
    return "post-operative knee: the native joint line was resected (see the component angles)"


def compute_measurements(
    points: np.ndarray,
    scheme: LandmarkScheme,
    laterality: str = "L",
    pixel_spacing_mm: tuple[float, float] | None = None,
    *,
    levels: ShaftLevels | None = None,
    unmeasurable_axes: Mapping[str, str] | None = None,
    visible: np.ndarray | None = None,
    spacing_source: str | None = None,
    names: Iterable[str] | None = None,
    alignment: AlignmentResult | None = None,
    femoral_axis: str = PANEL_FEMORAL_AXIS,
) -> dict[str, Measurement]:
    """The panel for landmarks ``points`` (source image pixels, a right knee unmirrored) following ``scheme``.

    ``levels``: the shaft levels of the axes (default the paper's); ``unmeasurable_axes``: bone -> why its axis is
    not measured (measurements needing it are not measurable); ``visible``: per landmark, whether it is in the
    image (None: all are); ``spacing_source``: ``"PixelSpacing"`` or ``"ImagerPixelSpacing"`` (the latter is noted
    on widths); ``names``: which measurements (default all; the aTFA always); ``alignment``: already computed
    ``compute_alignment`` of the same points and levels, reused; ``femoral_axis``: the femoral axis of aLDFA and the
    femoral component angle, ``"fnts"`` (the panel's) or ``"fts"`` (for comparison, e.g.
    ``tests/bench/bench_femoral_axis.py``). Geometric statuses only (``ok`` or
    ``not_measurable``, ``low_confidence`` for implausible values); ``grade`` adds the landmark confidences.
    """
    pts = scheme.check_points(points)
    levels = levels or (alignment.levels if alignment is not None else ShaftLevels())
    if alignment is None:
        alignment = compute_alignment(pts, scheme, laterality, pixel_spacing_mm, levels)
    if femoral_axis not in ATFA_METHODS:
        raise ValueError(f"unknown femoral axis {femoral_axis!r}; expected one of {ATFA_METHODS}")
    ctx = _Context(KneeFrame.of(pts, laterality, pixel_spacing_mm), scheme, SchemeParts.of(scheme), alignment,
                   _axis_landmarks(scheme, levels), femoral_axis, dict(unmeasurable_axes or {}),
                   None if visible is None else np.asarray(visible, bool), pixel_spacing_mm is not None, spacing_source)
    out: dict[str, Measurement] = {}
    for name in resolve_names(names):
        spec = SPECS[name]
        phase_reason = _phase_reason(spec, scheme.phase)
        if phase_reason:
            out[name] = not_measurable(name, phase_reason)
            continue
        try:
            if spec.unit == "mm":
                value, used, lines, note = _jsw(ctx, "medial" if name == "jsw_medial" else "lateral")
                deviation = None
            else:
                value, used, lines, deviation = _angle_measurement(ctx, spec)
                note = None
            hidden = ctx.hidden(used)
            if hidden:
                raise _NotMeasurable(hidden)
        except _NotMeasurable as exc:
            out[name] = not_measurable(name, str(exc))
            continue
        status, reason = STATUS_OK, note
        low, high = spec.plausible
        if not low <= value <= high:
            status, reason = STATUS_LOW_CONFIDENCE, f"implausible value ({value:.1f} outside {low:g} to {high:g})"
        out[name] = Measurement(name, float(value), status, reason, tuple(lines), tuple(sorted(set(used))),
                                None if deviation is None else float(deviation))
    return out


def grade(measurements: Mapping[str, Measurement], landmark_confidence: np.ndarray, threshold: float,
          whole: float = 1.0, whole_reasons: Iterable[str] = ()) -> dict[str, Measurement]:
    """Each measurement's confidence: ``whole`` (what concerns the landmark set as a whole, e.g. laterality, phase,
    a mirrored copy that disagrees) times the mean heatmap confidence of its own landmarks; below ``threshold`` an
    ``ok`` measurement becomes ``low_confidence`` with the reason."""
    conf = np.asarray(landmark_confidence, np.float64)
    whole_text = "; ".join(whole_reasons) or f"whole result uncertain (confidence {whole:.2f})"
    out = {}
    for name, m in measurements.items():
        if m.status == STATUS_OK and m.landmarks:
            own = float(conf[list(m.landmarks)].mean())
            if whole < threshold:
                m = replace(m, status=STATUS_LOW_CONFIDENCE, reason=whole_text)
            elif whole * own < threshold:
                m = replace(m, status=STATUS_LOW_CONFIDENCE,
                            reason=f"its landmarks are uncertain (confidence {whole * own:.2f})")
        out[name] = m
    return out


def distrust_through(measurements: Mapping[str, Measurement], landmarks: Iterable[int], reason: str
                     ) -> dict[str, Measurement]:
    """Every ``ok`` measurement drawn through one of ``landmarks`` becomes low-confidence with ``reason``."""
    used = set(landmarks)
    return {n: replace(m, status=STATUS_LOW_CONFIDENCE, reason=reason)
            if m.status == STATUS_OK and used & set(m.landmarks) else m for n, m in measurements.items()}


def apply_site_ranges(measurements: Mapping[str, Measurement], ranges: Mapping[str, ReferenceRange] | None
                      ) -> dict[str, Measurement]:
    """Attach each site's reference range to its measurement (shown as "outside the site's range", never as a
    diagnosis)."""
    ranges = ranges or {}
    unknown = set(ranges) - set(SPECS)
    if unknown:
        raise ValueError(f"reference ranges for unknown measurement(s) {sorted(unknown)}")
    return {n: replace(m, site_range=ranges[n]) if n in ranges else m for n, m in measurements.items()}
