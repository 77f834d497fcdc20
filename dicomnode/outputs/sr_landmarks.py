"""The optional landmark-detail SR (output kind ``landmarks``): what the model found, for review and research.

A TID 1500 Comprehensive SR in a series of its own, next to the measurement report (:mod:`.sr`):

1. The analysed region (TID 1410, a closed POLYLINE around the landmarks) with the result confidence (NUM, %)
   and the result status.
2. One group per landmark curve of the scheme (TID 1410, an open POLYLINE through its points, the bone as
   finding site) with the mean landmark confidence of its points (NUM, %).

Not sent by default: a viewer such as OHIF labels every one of these groups over the image ("Mean landmark
confidence: 82.86 %" and the finding site), which hides the bones the angles were measured on.
"""

from __future__ import annotations

import numpy as np
import pydicom
from highdicom.sr import (
    ImageRegion,
    Measurement,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForRegion,
)

from dicomnode.outputs import codes
from dicomnode.outputs.common import NodeIdentity, Target, dicom_coords, target
from dicomnode.outputs.description import Description, describe
from dicomnode.outputs.sr import algorithm, knee_site, report_document, tracking
from model.result import KneePrediction


def _region_group(t: Target, d: Description, label: str, points: np.ndarray, site,
                  measurements: list[Measurement], evaluations: list[QualitativeEvaluation] | None = None,
                  finding_type=None) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking(t.ref, d, label),
        referenced_region=ImageRegion(graphic_type="POLYLINE", graphic_data=dicom_coords(points),
                                      source_image=SourceImageForRegion.from_source_image(t.ref)),
        finding_type=finding_type,
        algorithm_id=algorithm(t, d),
        finding_sites=[knee_site(d, site)],
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _percent(name, fraction: float) -> Measurement:
    return Measurement(name=name, value=round(100.0 * float(fraction), 2), unit=codes.PERCENT)


def _analysed_region_group(t: Target, d: Description):
    (x0, y0), (x1, y1) = d.landmarks.min(axis=0), d.landmarks.max(axis=0)
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    return _region_group(
        t, d, f"{d.side} knee analysed region", box, codes.KNEE_JOINT,
        [_percent(codes.RESULT_CONFIDENCE, d.prediction.confidence)],
        [QualitativeEvaluation(codes.RESULT_STATUS, d.status_code)],
        finding_type=codes.ANALYSED_REGION,
    )


def _landmark_groups(t: Target, d: Description):
    conf = np.asarray(d.prediction.landmark_confidence, dtype=np.float64)
    for curve in d.scheme.curves:
        idx = list(curve.indices)
        pts = d.landmarks[idx]
        if curve.closed:
            pts = np.vstack([pts, pts[:1]])
        yield _region_group(
            t, d, f"Landmarks: {curve.name.replace('_', ' ')}", pts,
            codes.BONE_SITES.get(curve.bone, codes.KNEE_JOINT),
            [_percent(codes.LANDMARK_CONFIDENCE, float(conf[idx].mean()))],
            finding_type=codes.LANDMARK_OUTLINE,
        )


def build_landmarks_sr(source: pydicom.Dataset, result: KneePrediction | Description, *,
                       series_uid: str | None = None, sop_instance_uid: str | None = None, instance_number: int = 1,
                       identity: NodeIdentity | None = None) -> pydicom.Dataset:
    """The landmark-detail SR of a result (a prediction or its description) on ``source``, in the source's study
    and a series of its own."""
    d = describe(result)
    t = target(source, d.prediction, "landmarks", series_uid=series_uid, sop_instance_uid=sop_instance_uid,
               identity=identity)
    return report_document(t, [_analysed_region_group(t, d), *_landmark_groups(t, d)], instance_number)
