"""The measurement of record: a Comprehensive SR (TID 1500 Measurement Report) of one knee's alignment.

Content tree (one document per source image):

- Measurement Report (DCM 126000) with language, a device observer (this node), procedure reported, and an
  Image Library (TID 1600) listing the source image with the descriptors its attributes support (see
  :mod:`.image_library`: a CR with only Pixel Spacing, or with no spacing at all, gets its SR too).
- Imaging Measurements (DCM 126010) holding one group per knee (TID 1501): tracking identifier and UID, the
  algorithm (TID 4019: the weights' name, version and SHA-256), finding site knee joint with laterality, the
  source image; the planar measurements of :func:`alignment_measurements` as NUMs, each with exactly one SCOORD
  (for an angle a POLYLINE of 4 points: femoral axis proximal, distal, tibial axis proximal, distal; purpose
  "Arm of angle") referencing the source; qualitative evaluations: surgical phase, laterality, result status;
  TEXT: the status in words (with the confidence), where the laterality came from, which pixel spacing the
  measurement used (Pixel Spacing, Imager Pixel Spacing or none), the intended use.

A second group holds the knee alignment panel (``model.measurements``, as configured): pre-op JLCA, aLDFA, MPTA
and the medial and lateral joint space widths; post-op the femoral and tibial component angles and their
varus/valgus from perpendicular. Each measured value is a NUM with exactly one SCOORD: the 4 points of its two
lines (purpose "Arm of angle"), or the 2 ends of a joint space width; a low-confidence value is named with the
LOW CONFIDENCE twin of its code. The femoral axis of aLDFA and of the femoral component is given as the stretch of
that axis from the joint line to :data:`FEMORAL_ARM` plateau widths above it (same direction, so the same angle):
OHIF puts a group's label beside the middle of the group's points, and with the whole femoral axis the panel's label
would sit on the aTFA's. A measurement that is not measurable has no NUM (there is no number to give):
a TEXT "Measurement note" says so with the reason, as it says why a value is low-confidence, that a width is at the
detector (ImagerPixelSpacing), or that a value lies outside the site's reference range.

What a viewer draws: OHIF (3.x) draws each group as one annotation whose label lists "concept name: value unit"
for every NUM, at most 5 lines. So this report holds only what the surgeon came for, the angles and their axes;
a low-confidence angle is named "aTFA (FNTS) LOW CONFIDENCE", so the warning is in the label itself. Landmark outlines and per-curve confidences are in the optional landmark-detail SR
(:mod:`.sr_landmarks`), whose labels would otherwise cover the bones. SCOORD coordinates: see :mod:`.common`.

To add a measurement (a joint line angle, a joint space width), add it to :func:`alignment_measurements`, or
build another group with :func:`measurement_group` when a group would exceed :data:`MAX_LABEL_LINES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    ComprehensiveSR,
    CoordinatesForMeasurement,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)

from dicomnode.outputs import codes
from dicomnode.outputs.common import (
    NodeIdentity,
    Target,
    derived_uid,
    dicom_coords,
    prediction_digest,
    set_device_uid,
    target,
)
from dicomnode.outputs.image_library import image_library, spacing_statement
from dicomnode.outputs.overlay import (
    DISCLAIMER_TEXT,
    angle_arms,
    angle_value,
    laterality_source_text,
    shaft_levels_text,
    laterality_word,
    status_note,
)
from model.measurements import STATUS_LOW_CONFIDENCE, STATUS_OK
from model.result import KneePrediction

METHODS = ("fnts", "fts")
FEMORAL_ARM = 0.3  # plateau widths of femoral axis drawn above the joint line in the panel's SCOORDs
MAX_LABEL_LINES = 5  # OHIF shows at most this many "name: value" lines per measurement group


@dataclass(frozen=True)
class PlanarMeasurement:
    """One number and the geometry it was measured on: a NUM holding exactly one SCOORD."""

    name: CodedConcept
    value: float
    unit: CodedConcept
    points: np.ndarray  # (N, 2) source pixel centres [column, row]
    purpose: CodedConcept | None = None
    graphic_type: str = "POLYLINE"


def alignment_measurements(prediction: KneePrediction) -> list[PlanarMeasurement]:
    """The default report's measurements: aTFA by FNTS and by FTS, each on its femoral and tibial axes."""
    low = prediction.low_confidence
    return [PlanarMeasurement(codes.angle_code(method, low), round(angle_value(prediction, method), 3),
                              codes.DEGREE, angle_arms(prediction, method), codes.ARM_OF_ANGLE)
            for method in METHODS]


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


def tracking(ref: pydicom.Dataset, prediction: KneePrediction, label: str) -> TrackingIdentifier:
    uid = derived_uid(str(ref.SOPInstanceUID), prediction_digest(prediction), label)
    return TrackingIdentifier(uid=uid, identifier=label)


def algorithm(t: Target, prediction: KneePrediction) -> AlgorithmIdentification:
    """TID 4019: the weights by model card name and version, their checksum among the parameters."""
    return AlgorithmIdentification(
        name=t.algorithm.name, version=t.algorithm.version,
        parameters=[f"weights {t.algorithm.checksum_text}", f"landmark scheme {prediction.scheme_id}",
                    f"confidence threshold {prediction.confidence_threshold:g}"],
    )


def knee_site(prediction: KneePrediction, site=codes.KNEE_JOINT) -> FindingSite:
    return FindingSite(anatomic_location=site, laterality=codes.laterality_code(prediction.laterality))


def status_code(prediction: KneePrediction):
    return codes.STATUS_LOW_CONFIDENCE if prediction.low_confidence else codes.STATUS_CONFIDENT


def _num(ref: pydicom.Dataset, m: PlanarMeasurement) -> Measurement:
    return Measurement(
        name=m.name, value=m.value, unit=m.unit,
        referenced_coordinates=[CoordinatesForMeasurement(
            graphic_type=m.graphic_type, graphic_data=dicom_coords(m.points),
            source_image=SourceImageForRegion.from_source_image(ref),
            **({"purpose": m.purpose} if m.purpose is not None else {}))],  # highdicom's default: SCT "Source"
    )


def measurement_group(t: Target, prediction: KneePrediction, label: str,
                      measurements: Sequence[PlanarMeasurement],
                      notes: Sequence[str] = ()) -> MeasurementsAndQualitativeEvaluations:
    """A TID 1501 group of planar measurements on the source, with the knee's phase, laterality and status, and
    ``notes`` as "Measurement note" TEXT items."""
    if not 0 < len(measurements) <= MAX_LABEL_LINES:
        raise ValueError(f"a measurement group takes 1 to {MAX_LABEL_LINES} measurements (OHIF shows no more "
                         f"label lines), got {len(measurements)}: split them into several groups")
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking(t.ref, prediction, label),
        algorithm_id=algorithm(t, prediction),
        finding_sites=[knee_site(prediction)],
        measurements=[_num(t.ref, m) for m in measurements],
        qualitative_evaluations=[
            QualitativeEvaluation(codes.SURGICAL_PHASE, codes.phase_code(prediction.phase)),
            QualitativeEvaluation(codes.LATERALITY, codes.laterality_code(prediction.laterality)),
            QualitativeEvaluation(codes.RESULT_STATUS, status_code(prediction)),
        ],
        source_images=[SourceImageForMeasurementGroup.from_source_image(t.ref)],
    )
    for name, text in ((codes.STATUS_NOTE, status_note(prediction)),
                       (codes.LATERALITY_SOURCE, laterality_source_text(prediction)),
                       (codes.PIXEL_SPACING_USED, spacing_statement(prediction)),
                       (codes.SHAFT_LEVELS, shaft_levels_text(prediction)),
                       *((codes.MEASUREMENT_NOTE, note) for note in notes),
                       (codes.DISCLAIMER, DISCLAIMER_TEXT)):
        group[0].ContentSequence.append(
            TextContentItem(name=name, value=text, relationship_type=RelationshipTypeValues.CONTAINS))
    return group


def report_document(t: Target, groups: list, instance_number: int = 1) -> ComprehensiveSR:
    """A TID 1500 Comprehensive SR of ``groups`` on the source, made by this node (device observer)."""
    observer = ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=t.identity.device_uid, name=t.identity.device_name, manufacturer_name=t.identity.manufacturer,
            model_name=t.identity.model_name, serial_number=t.identity.serial_number),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_person_context=None, observer_device_context=observer),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=groups,
    )
    # TID 1500 row order: the Image Library comes right before Imaging Measurements (the last item).
    report[0].ContentSequence.insert(len(report[0].ContentSequence) - 1, image_library(t.ref))
    sr = ComprehensiveSR(
        evidence=[t.ref],
        content=report[0],
        series_instance_uid=t.series_uid,
        series_number=t.series_number,
        sop_instance_uid=t.sop_instance_uid,
        instance_number=instance_number,
        is_complete=True,
        is_final=False,
        is_verified=False,
        performed_procedure_codes=[codes.IMAGING_PROCEDURE],
        series_description=t.series_description,
        coding_schemes=[codes.CODING_SCHEME],
        **t.equipment,
    )
    set_device_uid(sr, t)
    return sr


def build_sr(source: pydicom.Dataset, prediction: KneePrediction, *, series_uid: str | None = None,
             sop_instance_uid: str | None = None, instance_number: int = 1,
             identity: NodeIdentity | None = None) -> pydicom.Dataset:
    """The Comprehensive SR of ``prediction`` on ``source``, in the source's study and a new series.

    UIDs default to ones derived from the source and the result (see :func:`.common.output_uids`).
    """
    t = target(source, prediction, "sr", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    suffix = " - LOW CONFIDENCE" if prediction.low_confidence else ""
    side = laterality_word(prediction)
    panel, notes = panel_measurements(prediction), panel_notes(prediction)
    groups = [measurement_group(t, prediction, f"{side} knee aTFA{suffix}", alignment_measurements(prediction),
                                [] if panel else notes)]
    if panel:  # its label warns when one of its own values is flagged (a JLCA needs no axis the aTFA may lack)
        flagged = any(m.status == STATUS_LOW_CONFIDENCE for m in prediction.measurements.values()
                      if m.name in codes.PANEL)
        label = f"{side} knee alignment panel" + (" - LOW CONFIDENCE" if flagged else "")
        groups.append(measurement_group(t, prediction, label, panel, notes))
    return report_document(t, groups, instance_number)
