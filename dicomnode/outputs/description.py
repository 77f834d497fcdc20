"""One prepared description of a result, read by every output builder (SR, landmark SR, SC, GSPS).

    description = describe(prediction)          # once per result: words, codes, lines and colours
    build_sr(source, description); build_sc(source, description)

It holds everything the objects say about the result and how they show it: the landmarks with the scheme's curves
(checked once), the two aTFA with their arms and coded names, the axes with their labels and colour keys, the status
with its reasons, code and sentence, the measurement panel as planar measurements with its notes, the report's TEXT
items, and the overlay's text lines (with a degree sign for pictures and " deg" for presentation states). The words
come from :mod:`.overlay`, the codes from :mod:`.codes`, the angles and their arms from the alignment result: the
builders read this description only and never go back to those modules for content. A builder given a
``KneePrediction`` describes it itself (:func:`describe` returns a description unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from highdicom.sr import CodedConcept

from dicomnode.outputs import codes
from dicomnode.outputs.common import LOW_CONFIDENCE_SUFFIX
from dicomnode.outputs.image_library import spacing_statement
from dicomnode.outputs.overlay import (
    AxisLine,
    TextLine,
    axis_lines,
    laterality_source_text,
    laterality_word,
    scheme_of,
    shaft_levels_text,
    status_note,
    summary_lines,
)
from model.alignment import ATFA_METHODS
from model.measurements import STATUS_LOW_CONFIDENCE, STATUS_OK
from model.result import KneePrediction
from model.scheme import LandmarkScheme

FEMORAL_ARM = 0.3  # plateau widths of femoral axis drawn above the joint line in the panel's SCOORDs


@dataclass(frozen=True)
class PlanarMeasurement:
    """One number and the geometry it was measured on: a NUM holding exactly one SCOORD."""

    name: CodedConcept
    value: float
    unit: CodedConcept
    points: np.ndarray  # (N, 2) source pixel centres [column, row]
    purpose: CodedConcept | None = None
    graphic_type: str = "POLYLINE"


@dataclass(frozen=True)
class Description:
    """What the output objects say about one result (module docstring); built by :func:`describe`."""

    prediction: KneePrediction  # the landmarks, confidences and model identity, as predicted
    scheme: LandmarkScheme  # the scheme the landmarks follow (checked against the prediction)
    side: str  # "Left" or "Right"
    laterality_code: CodedConcept
    phase_code: CodedConcept
    low_confidence: bool
    status_code: CodedConcept
    label_suffix: str  # LOW_CONFIDENCE_SUFFIX (dicomnode.outputs.common) or ""
    angles: tuple[PlanarMeasurement, ...]  # aTFA by FNTS, then FTS, on their arms
    panel: tuple[PlanarMeasurement, ...]  # the measured panel values (model.measurements), on their lines
    panel_flagged: bool  # one of the panel's own values is low-confidence
    panel_notes: tuple[str, ...]  # one sentence per panel value that needs one
    texts: tuple[tuple[CodedConcept, str], ...]  # the report's TEXT items before its notes (status, sources)
    axes: tuple[AxisLine, ...]  # FNTS, FTS, tibia: drawn in this order
    lines: tuple[TextLine, ...]  # the overlay's text block with the degree sign
    plain_lines: tuple[TextLine, ...]  # the same with " deg" (presentation states: no character set needed)

    @property
    def laterality(self) -> str:
        return self.prediction.laterality

    @property
    def landmarks(self) -> np.ndarray:
        return np.asarray(self.prediction.landmarks, dtype=np.float64)


def alignment_measurements(prediction: KneePrediction) -> list[PlanarMeasurement]:
    """The default report's measurements: aTFA by FNTS and by FTS, each on its femoral and tibial axes."""
    low, alignment = prediction.low_confidence, prediction.alignment
    return [PlanarMeasurement(codes.angle_code(method, low), round(alignment.angle_deg(method), 3),
                              codes.DEGREE, alignment.angle_arms(method), codes.ARM_OF_ANGLE)
            for method in ATFA_METHODS]


def femoral_arm(axis: np.ndarray, joint_line: np.ndarray, length: float) -> np.ndarray:
    """The femoral axis as the arm of its angle with ``joint_line``: from where the two lines meet to ``length``
    pixels proximally, along the axis (``axis`` is proximal, distal); the axis as given if they do not meet."""
    d, e = axis[1] - axis[0], joint_line[1] - joint_line[0]
    det = d[0] * e[1] - d[1] * e[0]
    if abs(det) < 1e-9 * float(np.linalg.norm(d) * np.linalg.norm(e)):
        return axis
    t = ((joint_line[0, 0] - axis[0, 0]) * e[1] - (joint_line[0, 1] - axis[0, 1]) * e[0]) / det
    vertex = axis[0] + t * d
    return np.array([vertex - length * d / np.linalg.norm(d), vertex])


def panel_measurements(prediction: KneePrediction) -> list[PlanarMeasurement]:
    """The panel's measured values (not the aTFA, which has its own group), each on the lines it was taken between;
    a component angle is followed by its varus/valgus from perpendicular."""
    out = []
    for name, m in prediction.measurements.items():
        if name not in codes.PANEL or m.value is None:
            continue
        low = m.status == STATUS_LOW_CONFIDENCE
        lines = [np.asarray(line, dtype=np.float64) for line in m.lines]
        if m.spec.bones == ("femur",):  # line 0 is the femoral axis
            lines[0] = femoral_arm(lines[0], lines[1], FEMORAL_ARM * prediction.reference_length_px)
        points = np.vstack(lines)
        unit, purpose = (codes.MILLIMETRE, None) if m.unit == "mm" else (codes.DEGREE, codes.ARM_OF_ANGLE)
        out.append(PlanarMeasurement(codes.panel_code(name, low), round(m.value, 3), unit, points, purpose))
        if m.deviation_deg is not None:
            out.append(PlanarMeasurement(codes.panel_code(f"{name}_varus_valgus", low), round(m.deviation_deg, 3),
                                         codes.DEGREE, points, codes.ARM_OF_ANGLE))
    return out


def panel_notes(prediction: KneePrediction) -> list[str]:
    """One sentence per panel measurement that needs one: not measurable, low confidence, a note on its value,
    outside the site's range."""
    notes = []
    for name, m in prediction.measurements.items():
        if name not in codes.PANEL:
            continue
        title = codes.PANEL[name][1]
        if m.value is None:
            notes.append(f"{title}: not measurable: {m.reason}")
        elif m.status == STATUS_LOW_CONFIDENCE:
            notes.append(f"{title}: LOW CONFIDENCE, not a valid measurement: {m.reason}")
        elif m.status == STATUS_OK and m.reason:
            notes.append(f"{title}: {m.reason}")
        if m.range_note():
            unit = " mm" if m.unit == "mm" else " deg"
            notes.append(f"{title} {m.value:.1f}{unit}: {m.range_note()}")
    return notes


def describe(result: KneePrediction | Description) -> Description:
    """The description of ``result`` (a description is returned as it is)."""
    if isinstance(result, Description):
        return result
    prediction = result
    low = prediction.low_confidence
    return Description(
        prediction=prediction,
        scheme=scheme_of(prediction),
        side=laterality_word(prediction),
        laterality_code=codes.laterality_code(prediction.laterality),
        phase_code=codes.phase_code(prediction.phase),
        low_confidence=low,
        status_code=codes.STATUS_LOW_CONFIDENCE if low else codes.STATUS_CONFIDENT,
        label_suffix=LOW_CONFIDENCE_SUFFIX if low else "",
        angles=tuple(alignment_measurements(prediction)),
        panel=tuple(panel_measurements(prediction)),
        panel_flagged=any(m.status == STATUS_LOW_CONFIDENCE for m in prediction.measurements.values()
                          if m.name in codes.PANEL),
        panel_notes=tuple(panel_notes(prediction)),
        texts=((codes.STATUS_NOTE, status_note(prediction)),
               (codes.LATERALITY_SOURCE, laterality_source_text(prediction)),
               (codes.PIXEL_SPACING_USED, spacing_statement(prediction)),
               (codes.SHAFT_LEVELS, shaft_levels_text(prediction))),
        axes=tuple(axis_lines(prediction)),
        lines=tuple(summary_lines(prediction)),
        plain_lines=tuple(summary_lines(prediction, degree_sign=" deg")),
    )


__all__ = ["FEMORAL_ARM", "Description", "PlanarMeasurement", "alignment_measurements",
           "describe", "femoral_arm", "panel_measurements", "panel_notes"]
