"""The measurement of record: a Comprehensive SR (TID 1500 Measurement Report) of one knee's alignment.

Content tree (one document per source image):

- Measurement Report (DCM 126000) with language, a device observer (this node), procedure reported, and an
  Image Library (TID 1600) listing the source image.
- Imaging Measurements (DCM 126010) holding:

  1. The knee (TID 1501): tracking identifier and UID, algorithm (name and version of the model), finding site
     knee joint with laterality, the source image; the two angles as NUM in degrees (UCUM "deg"), each with
     exactly one SCOORD POLYLINE of 4 points (femoral axis proximal, distal, tibial axis proximal, distal;
     purpose "Arm of angle") referencing the source; qualitative evaluations: surgical phase, laterality,
     result status; TEXT: the status in words, where the laterality came from, the intended use.
  2. The analysed region (TID 1410, a closed POLYLINE around the landmarks) with the result confidence (NUM, %)
     and the result status.
  3. One group per landmark curve of the scheme (TID 1410, an open POLYLINE through its points) with the mean
     landmark confidence (NUM, %).

Keeping NUMs without coordinates out of the knee group and one SCOORD under each angle is what OHIF needs to
show the angles on the image. A low-confidence result keeps its angles but under concept names that say
"LOW CONFIDENCE - not a valid measurement" (see :mod:`dicomnode.outputs.codes`), with the status in the group,
in the tracking identifier and in the series description. SCOORD coordinates: see :mod:`.common`.
"""

from __future__ import annotations

import numpy as np
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    ComprehensiveSR,
    CoordinatesForMeasurement,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
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
    derived_uid,
    dicom_coords,
    equipment_attributes,
    prediction_digest,
    target,
)
from dicomnode.outputs.overlay import (
    DISCLAIMER_TEXT,
    angle_arms,
    angle_value,
    laterality_source_text,
    laterality_word,
    scheme_of,
    status_note,
)
from model.result import KneePrediction

METHODS = ("fnts", "fts")


def _tracking(source: pydicom.Dataset, prediction: KneePrediction, label: str) -> TrackingIdentifier:
    uid = derived_uid(str(source.SOPInstanceUID), prediction_digest(prediction), label)
    return TrackingIdentifier(uid=uid, identifier=label)


def _algorithm(prediction: KneePrediction) -> AlgorithmIdentification:
    return AlgorithmIdentification(
        name=prediction.model_name, version=prediction.model_version,
        parameters=[f"scheme={prediction.scheme_id}", f"confidence_threshold={prediction.confidence_threshold:g}"],
    )


def _knee_site(prediction: KneePrediction, site=codes.KNEE_JOINT) -> FindingSite:
    return FindingSite(anatomic_location=site, laterality=codes.laterality_code(prediction.laterality))


def _status_code(prediction: KneePrediction):
    return codes.STATUS_LOW_CONFIDENCE if prediction.low_confidence else codes.STATUS_CONFIDENT


def _knee_group(ref: pydicom.Dataset, prediction: KneePrediction) -> MeasurementsAndQualitativeEvaluations:
    low = prediction.low_confidence
    label = f"{laterality_word(prediction)} knee aTFA" + (" - LOW CONFIDENCE" if low else "")
    measurements = [
        Measurement(
            name=codes.angle_code(method, low),
            value=round(angle_value(prediction, method), 3),
            unit=codes.DEGREE,
            referenced_coordinates=[CoordinatesForMeasurement(
                graphic_type="POLYLINE",
                graphic_data=dicom_coords(angle_arms(prediction, method)),
                source_image=SourceImageForRegion.from_source_image(ref),
                purpose=codes.ARM_OF_ANGLE,
            )],
        )
        for method in METHODS
    ]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(ref, prediction, label),
        algorithm_id=_algorithm(prediction),
        finding_sites=[_knee_site(prediction)],
        measurements=measurements,
        qualitative_evaluations=[
            QualitativeEvaluation(codes.SURGICAL_PHASE, codes.phase_code(prediction.phase)),
            QualitativeEvaluation(codes.LATERALITY, codes.laterality_code(prediction.laterality)),
            QualitativeEvaluation(codes.RESULT_STATUS, _status_code(prediction)),
        ],
        source_images=[SourceImageForMeasurementGroup.from_source_image(ref)],
    )
    for name, text in ((codes.STATUS_NOTE, status_note(prediction)),
                       (codes.LATERALITY_SOURCE, laterality_source_text(prediction)),
                       (codes.DISCLAIMER, DISCLAIMER_TEXT)):
        group[0].ContentSequence.append(
            TextContentItem(name=name, value=text, relationship_type=RelationshipTypeValues.CONTAINS))
    return group


def _region_group(ref: pydicom.Dataset, prediction: KneePrediction,
                  label: str, points: np.ndarray, site, measurements: list[Measurement],
                  evaluations: list[QualitativeEvaluation] | None = None,
                  finding_type=None) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(ref, prediction, label),
        referenced_region=ImageRegion(graphic_type="POLYLINE", graphic_data=dicom_coords(points),
                                      source_image=SourceImageForRegion.from_source_image(ref)),
        finding_type=finding_type,
        algorithm_id=_algorithm(prediction),
        finding_sites=[_knee_site(prediction, site)],
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _percent(name, fraction: float) -> Measurement:
    return Measurement(name=name, value=round(100.0 * float(fraction), 2), unit=codes.PERCENT)


def _analysed_region_group(ref: pydicom.Dataset, prediction: KneePrediction):
    pts = np.asarray(prediction.landmarks, dtype=np.float64)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    return _region_group(
        ref, prediction, f"{laterality_word(prediction)} knee analysed region", box, codes.KNEE_JOINT,
        [_percent(codes.RESULT_CONFIDENCE, prediction.confidence)],
        [QualitativeEvaluation(codes.RESULT_STATUS, _status_code(prediction))],
        finding_type=codes.ANALYSED_REGION,
    )


def _landmark_groups(ref: pydicom.Dataset, prediction: KneePrediction):
    scheme = scheme_of(prediction)
    conf = np.asarray(prediction.landmark_confidence, dtype=np.float64)
    for curve in scheme.curves:
        idx = list(curve.indices)
        pts = np.asarray(prediction.landmarks, dtype=np.float64)[idx]
        if curve.closed:
            pts = np.vstack([pts, pts[:1]])
        yield _region_group(
            ref, prediction, f"Landmarks: {curve.name.replace('_', ' ')}", pts,
            codes.BONE_SITES.get(curve.bone, codes.KNEE_JOINT),
            [_percent(codes.LANDMARK_CONFIDENCE, float(conf[idx].mean()))],
            finding_type=codes.LANDMARK_OUTLINE,
        )


def build_sr(source: pydicom.Dataset, prediction: KneePrediction, *, series_uid: str | None = None,
             sop_instance_uid: str | None = None, instance_number: int = 1,
             identity: NodeIdentity | None = None) -> pydicom.Dataset:
    """The Comprehensive SR of ``prediction`` on ``source``, in the source's study and a new series.

    UIDs default to ones derived from the source and the result (see :func:`.common.output_uids`).
    """
    t = target(source, prediction, "sr", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    observer = ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=t.identity.device_uid, name=t.identity.device_name, manufacturer_name=t.identity.manufacturer,
            model_name=t.identity.model_name, serial_number=t.identity.serial_number),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_person_context=None, observer_device_context=observer),
        procedure_reported=codes.IMAGING_PROCEDURE,
        imaging_measurements=[_knee_group(t.ref, prediction), _analysed_region_group(t.ref, prediction),
                              *_landmark_groups(t.ref, prediction)],
        referenced_images=[t.ref],
    )
    return ComprehensiveSR(
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
        **equipment_attributes(t.identity),
    )
