"""The measurement of record: a Comprehensive SR (TID 1500 Measurement Report) of one knee's alignment.

Content tree (one document per source image):

- Measurement Report (DCM 126000) with language, a device observer (this node), procedure reported, and an
  Image Library (TID 1600) listing the source image with the descriptors its attributes support (see
  :mod:`.image_library`: a CR with only Pixel Spacing, or with no spacing at all, gets its SR too).
- Imaging Measurements (DCM 126010) holding one group per knee (TID 1501): tracking identifier and UID, the
  algorithm (TID 4019: the weights' name, version and SHA-256), finding site knee joint with laterality, the
  source image; the two aTFA of the description (:mod:`.description`) as NUMs, each with exactly one SCOORD
  (for an angle a POLYLINE of 4 points: femoral axis proximal, distal, tibial axis proximal, distal; purpose
  "Arm of angle") referencing the source; qualitative evaluations: surgical phase, laterality, result status;
  TEXT: the status in words (with the confidence), where the laterality came from, which pixel spacing the
  measurement used (Pixel Spacing, Imager Pixel Spacing or none), the intended use.

A second group holds the knee alignment panel (``model.measurements``, as configured): pre-op JLCA, aLDFA, MPTA
and the medial and lateral joint space widths; post-op the femoral and tibial component angles and their
varus/valgus from perpendicular. Each measured value is a NUM with exactly one SCOORD: the 4 points of its two
lines (purpose "Arm of angle"), or the 2 ends of a joint space width; a low-confidence value is named with the
LOW CONFIDENCE twin of its code. The femoral axis of aLDFA and of the femoral component is given as the stretch of
that axis from the joint line to :data:`.description.FEMORAL_ARM` plateau widths above it (same direction, same angle):
OHIF puts a group's label beside the middle of the group's points, and with the whole femoral axis the panel's label
would sit on the aTFA's. A measurement that is not measurable has no NUM (there is no number to give):
a TEXT "Measurement note" says so with the reason, as it says why a value is low-confidence, that a width is at the
detector (ImagerPixelSpacing), or that a value lies outside the site's reference range.

What a viewer draws: OHIF (3.x) draws each group as one annotation whose label lists "concept name: value unit"
for every NUM, at most 5 lines. So this report holds only what the surgeon came for, the angles and their axes;
a low-confidence angle is named "aTFA (FNTS) LOW CONFIDENCE", so the warning is in the label itself. Landmark
outlines and per-curve confidences are in the optional landmark-detail SR (:mod:`.sr_landmarks`), whose labels
would otherwise cover the bones. SCOORD coordinates: see :mod:`.common`.

What the report says (values, arms, codes, status, sentences) is prepared once in :mod:`.description`; this module
only lays it out. To add a measurement, add it to the description, and build another group with
:func:`measurement_group` when a group would exceed :data:`MAX_LABEL_LINES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
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
    LOW_CONFIDENCE_SUFFIX,
    NodeIdentity,
    Target,
    derived_uid,
    dicom_coords,
    prediction_digest,
    set_device_uid,
    target,
)
from dicomnode.outputs.description import Description, PlanarMeasurement, describe
from dicomnode.outputs.image_library import image_library
from dicomnode.outputs.overlay import DISCLAIMER_TEXT
from model.result import KneePrediction

MAX_LABEL_LINES = 5  # OHIF shows at most this many "name: value" lines per measurement group


def tracking(ref: pydicom.Dataset, d: Description, label: str) -> TrackingIdentifier:
    uid = derived_uid(str(ref.SOPInstanceUID), prediction_digest(d.prediction), label)
    return TrackingIdentifier(uid=uid, identifier=label)


def algorithm(t: Target, d: Description) -> AlgorithmIdentification:
    """TID 4019: the weights by model card name and version, their checksum among the parameters."""
    return AlgorithmIdentification(
        name=t.algorithm.name, version=t.algorithm.version,
        parameters=[f"weights {t.algorithm.checksum_text}", f"landmark scheme {d.prediction.scheme_id}",
                    f"confidence threshold {d.prediction.confidence_threshold:g}"],
    )


def knee_site(d: Description, site=codes.KNEE_JOINT) -> FindingSite:
    return FindingSite(anatomic_location=site, laterality=d.laterality_code)


def _num(ref: pydicom.Dataset, m: PlanarMeasurement) -> Measurement:
    return Measurement(
        name=m.name, value=m.value, unit=m.unit,
        referenced_coordinates=[CoordinatesForMeasurement(
            graphic_type=m.graphic_type, graphic_data=dicom_coords(m.points),
            source_image=SourceImageForRegion.from_source_image(ref),
            **({"purpose": m.purpose} if m.purpose is not None else {}))],  # highdicom's default: SCT "Source"
    )


def measurement_group(t: Target, result: KneePrediction | Description, label: str,
                      measurements: Sequence[PlanarMeasurement],
                      notes: Sequence[str] = ()) -> MeasurementsAndQualitativeEvaluations:
    """A TID 1501 group of planar measurements on the source, with the knee's phase, laterality and status, and
    ``notes`` as "Measurement note" TEXT items."""
    if not 0 < len(measurements) <= MAX_LABEL_LINES:
        raise ValueError(f"a measurement group takes 1 to {MAX_LABEL_LINES} measurements (OHIF shows no more "
                         f"label lines), got {len(measurements)}: split them into several groups")
    d = describe(result)
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking(t.ref, d, label),
        algorithm_id=algorithm(t, d),
        finding_sites=[knee_site(d)],
        measurements=[_num(t.ref, m) for m in measurements],
        qualitative_evaluations=[
            QualitativeEvaluation(codes.SURGICAL_PHASE, d.phase_code),
            QualitativeEvaluation(codes.LATERALITY, d.laterality_code),
            QualitativeEvaluation(codes.RESULT_STATUS, d.status_code),
        ],
        source_images=[SourceImageForMeasurementGroup.from_source_image(t.ref)],
    )
    for name, text in (*d.texts, *((codes.MEASUREMENT_NOTE, note) for note in notes),
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


def build_sr(source: pydicom.Dataset, result: KneePrediction | Description, *, series_uid: str | None = None,
             sop_instance_uid: str | None = None, instance_number: int = 1,
             identity: NodeIdentity | None = None) -> pydicom.Dataset:
    """The Comprehensive SR of a result (a prediction or its description) on ``source``, in the source's study and
    a new series.

    UIDs default to ones derived from the source and the result (see :func:`.common.output_uids`).
    """
    d = describe(result)
    t = target(source, d.prediction, "sr", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    groups = [measurement_group(t, d, f"{d.side} knee aTFA{d.label_suffix}", d.angles,
                                [] if d.panel else d.panel_notes)]
    if d.panel:  # its label warns when one of its own values is flagged (a JLCA needs no axis the aTFA may lack)
        label = f"{d.side} knee alignment panel" + (LOW_CONFIDENCE_SUFFIX if d.panel_flagged else "")
        groups.append(measurement_group(t, d, label, d.panel, d.panel_notes))
    return report_document(t, groups, instance_number)


__all__ = ["MAX_LABEL_LINES", "build_sr", "measurement_group", "report_document"]
