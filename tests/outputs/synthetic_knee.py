"""Test material for the DICOM outputs: a small synthetic DX knee radiograph and a KneePrediction with real geometry.

The landmarks follow the shipped schemes curve by curve (shaft points at the scheme's levels, condyles, notch,
plateau, fibula, implants post-op) around a knee whose femoral and tibial axes meet at a chosen aTFA, so
``model.alignment.compute_alignment`` gives that angle back; the image is drawn from the same outlines (bone
brighter than soft tissue), so an overlay drawn on it can be judged by eye.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from model.alignment import compute_alignment
from model.measurements import ReferenceRange, apply_site_ranges, compute_measurements, grade
from model.frames import mirror_points
from model.result import KneePrediction
from model.scheme import LandmarkScheme, load_scheme


@dataclass(frozen=True)
class KneeGeometry:
    """A left knee in image pixels: joint centre, plateau width (the reference length) and axis directions."""

    centre: tuple[float, float]
    ref_len: float
    atfa_deg: float  # tibia turned laterally (+x) from the femur: positive = valgus
    rotation_deg: float = 0.0  # the whole knee turned clockwise on screen
    notch_offset: float = 0.04  # notch midpoint lateral of the femoral shaft axis, in reference lengths

    def direction(self, bone: str) -> tuple[np.ndarray, np.ndarray]:
        """(distal unit vector, lateral unit vector) of ``bone`` ("femur" or "tibia")."""
        theta = math.radians(self.rotation_deg) - (math.radians(self.atfa_deg) if bone == "femur" else 0.0)
        distal = np.array([math.sin(theta), math.cos(theta)])
        lateral = np.array([distal[1], -distal[0]])
        return distal, lateral

    def at(self, bone: str, level: float, side: float) -> np.ndarray:
        """Point ``level`` reference lengths distal of the centre along ``bone`` and ``side`` of them laterally."""
        distal, lateral = self.direction(bone)
        return np.asarray(self.centre) + self.ref_len * (level * distal + side * lateral)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _arc(g: KneeGeometry, bone: str, level: float, side: float, radius: float, a0: float, a1: float,
         n: int) -> np.ndarray:
    """Points on a circle around ``g.at(bone, level, side)``; angles in degrees from lateral toward distal."""
    out = []
    for a in np.radians(np.linspace(a0, a1, n)):
        out.append(g.at(bone, level + radius * math.sin(a), side + radius * math.cos(a)))
    return np.array(out)


def _femur_outline(g: KneeGeometry, side: float) -> np.ndarray:
    """22 points: 11 shaft points at -1.3..-0.3 reference lengths, then the flare down to the condyle's bottom."""
    hw = 0.18
    shaft = [g.at("femur", -1.3 + 0.1 * i, side * hw) for i in range(11)]
    flare = _bezier(g.at("femur", -0.22, side * 0.19), g.at("femur", -0.1, side * 0.52),
                    g.at("femur", -0.02, side * 0.4), 11)
    return np.vstack([shaft, flare])


def _tibia_outline(g: KneeGeometry, side: float) -> np.ndarray:
    """12 points: 4 on the metaphyseal flare below the plateau corner, then 8 shaft points at 0.6..1.3."""
    flare = _bezier(g.at("tibia", 0.08, side * 0.5), g.at("tibia", 0.3, side * 0.45),
                    g.at("tibia", 0.5, side * 0.19), 4)
    shaft = [g.at("tibia", 0.6 + 0.1 * i, side * 0.17) for i in range(8)]
    return np.vstack([flare, shaft])


def _curve_points(g: KneeGeometry, name: str, count: int) -> np.ndarray:
    """The points of one scheme curve (names as in model/schemes/*-v1.json)."""
    if name == "femur_medial_outline":
        return _femur_outline(g, -1.0)
    if name == "femur_lateral_outline":
        return _femur_outline(g, 1.0)
    if name == "medial_condyle_distal":
        return _bezier(g.at("femur", -0.02, -0.4), g.at("femur", 0.03, -0.2), g.at("femur", -0.06, -0.08), count)
    if name == "intercondylar_notch":  # symmetric about the notch axis, so indices 2 and 6 centre on it
        t = np.linspace(-1.0, 1.0, count)
        return np.array([g.at("femur", -0.06 - 0.09 * (1 - x * x), g.notch_offset * (1 - x * x) + 0.08 * x)
                         for x in t])
    if name == "lateral_condyle_distal":
        return _bezier(g.at("femur", -0.06, 0.08), g.at("femur", 0.03, 0.2), g.at("femur", -0.02, 0.4), count)
    if name == "tibial_plateau":  # corners exactly one reference length apart
        t = np.linspace(-0.5, 0.5, count)
        return np.array([g.at("tibia", 0.03 - 0.03 * math.exp(-(x / 0.06) ** 2), x) for x in t])
    if name == "tibia_medial_outline":
        return _tibia_outline(g, -1.0)
    if name == "tibia_lateral_outline":
        return _tibia_outline(g, 1.0)
    if name == "fibular_head":
        return _arc(g, "tibia", 0.22, 0.5, 0.1, -60.0, 200.0, count)
    if name == "fibular_shaft_medial":
        return np.array([g.at("tibia", 0.4 + 0.22 * i, 0.44 - 0.01 * i) for i in range(count)])
    if name == "fibular_shaft_lateral":
        return np.array([g.at("tibia", 0.4 + 0.22 * i, 0.55 - 0.01 * i) for i in range(count)])
    if name == "femoral_component":
        return _arc(g, "femur", -0.12, 0.0, 0.42, 200.0, -20.0, count)
    if name in ("tibial_tray", "tibial_stem"):  # outline: down (or across) one side, back along the other
        half = count // 2
        if name == "tibial_tray":
            t = np.linspace(-0.45, 0.45, half)
            return np.vstack([[g.at("tibia", 0.05, x) for x in t], [g.at("tibia", 0.1, x) for x in t[::-1]]])
        t = np.linspace(0.1, 0.4, half)
        return np.vstack([[g.at("tibia", y, -0.04) for y in t], [g.at("tibia", y, 0.04) for y in t[::-1]]])
    raise KeyError(f"no synthetic shape for curve {name!r}")


def left_knee_landmarks(scheme: LandmarkScheme, g: KneeGeometry) -> np.ndarray:
    """All landmarks of ``scheme`` for the left knee ``g``, [column, row] pixel centres."""
    pts = np.zeros((scheme.n_points, 2))
    for curve in scheme.curves:
        pts[curve.start:curve.start + curve.count] = _curve_points(g, curve.name, curve.count)
    return pts


def knee_image(landmarks: np.ndarray, scheme: LandmarkScheme, shape: tuple[int, int], bits: int = 12,
               seed: int = 0) -> np.ndarray:
    """A uint16 radiograph-like image: soft tissue, femur, tibia and fibula filled from their outlines."""
    cols = shape[1]
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    x = np.arange(cols)
    leg = 0.08 * top + 0.22 * top * np.exp(-(((x - cols / 2) / (0.33 * cols)) ** 2))  # soft tissue
    img = np.tile(leg, (shape[0], 1))

    def fill(poly: np.ndarray, value: float) -> None:
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
        img[mask > 0] += value

    c = {cv.name: landmarks[cv.start:cv.start + cv.count] for cv in scheme.curves}
    fill(np.vstack([c["femur_medial_outline"], c["medial_condyle_distal"], c["intercondylar_notch"],
                    c["lateral_condyle_distal"], c["femur_lateral_outline"][::-1]]), 0.4 * top)
    fill(np.vstack([c["tibia_medial_outline"][::-1], c["tibial_plateau"], c["tibia_lateral_outline"]]), 0.4 * top)
    fill(np.vstack([c["fibular_head"], c["fibular_shaft_lateral"], c["fibular_shaft_medial"][::-1]]),
         0.3 * top)
    if "femoral_component" in c:
        fill(c["femoral_component"], 0.25 * top)
        fill(np.vstack([c["tibial_tray"], c["tibial_stem"][::-1]]), 0.25 * top)
    img = cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(0, 0.01 * top, shape)
    return np.clip(img, 0, top).astype(np.uint16)


def dx_source(pixels: np.ndarray, *, laterality: str = "L", bits: int = 12, monochrome1: bool = False,
              spacing_mm: float = 0.15, study_uid: str | None = None) -> pydicom.Dataset:
    """A Digital X-Ray (for presentation) dataset around ``pixels`` with the attributes a modality sends."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    now = datetime.datetime(2024, 5, 17, 10, 30, 0)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = "ACC0001"
    ds.Modality = "DX"
    ds.Manufacturer = "Synthetic Radiography Inc"
    ds.ManufacturerModelName = "SynthDX"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StudyDescription = "KNEE AP"
    ds.SeriesDescription = "Knee AP"
    ds.PatientName = "Test^Knee"
    ds.PatientID = "KA-TEST-0001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # AP view displayed conventionally: patient's left to the right
    ds.BodyPartExamined = "KNEE"
    ds.ViewPosition = "AP"
    ds.ImageLaterality = laterality
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    top = (1 << bits) - 1
    ds.WindowCenter = round(top * 0.45)
    ds.WindowWidth = round(top * 0.8)
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.AcquisitionContextSequence = []
    knee = pydicom.Dataset()
    knee.CodeValue, knee.CodingSchemeDesignator, knee.CodeMeaning = "72696002", "SCT", "Knee"
    ds.AnatomicRegionSequence = [knee]
    view = pydicom.Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = "399348003", "SCT", "antero-posterior"
    ds.ViewCodeSequence = [view]
    ds.PositionerType = "NONE"
    stored = (top - pixels) if monochrome1 else pixels
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


def make_prediction(scheme: LandmarkScheme, landmarks: np.ndarray, laterality: str, *, confidence: float = 0.9,
                    threshold: float = 0.5, seed: int = 0,
                    reference_ranges: dict[str, ReferenceRange] | None = None) -> KneePrediction:
    """A KneePrediction whose angles, axes and measurement panel come from ``compute_alignment`` and
    ``compute_measurements`` on ``landmarks`` (the panel graded by the landmark confidences and ``confidence``)."""
    rng = np.random.default_rng(seed)
    landmark_confidence = rng.uniform(0.6, 0.99, scheme.n_points)
    panel = compute_measurements(landmarks, scheme, laterality, (0.15, 0.15), spacing_source="ImagerPixelSpacing")
    panel = apply_site_ranges(grade(panel, landmark_confidence, threshold, whole=confidence), reference_ranges)
    return KneePrediction(
        landmarks=landmarks,
        landmark_confidence=landmark_confidence,
        scheme_id=scheme.id,
        phase=scheme.phase,
        phase_probability=0.9 if scheme.phase == "postop" else 0.05,
        laterality=laterality,
        laterality_source="tag",
        alignment=compute_alignment(landmarks, scheme, laterality),
        confidence=confidence,
        confidence_threshold=threshold,
        pixel_spacing_mm=(0.15, 0.15),
        reference_length_px=scheme.reference_length(landmarks),
        model_name="kneealign-hourglass",
        model_version="0.1.0-test",
        measurements=panel,
    )


@dataclass
class KneeCase:
    source: pydicom.Dataset
    prediction: KneePrediction
    geometry: KneeGeometry


def knee_case(*, phase: str = "preop", laterality: str = "L", atfa_deg: float = 6.0, shape=(1000, 800),
              rotation_deg: float = 4.0, confidence: float = 0.9, monochrome1: bool = False,
              study_uid: str | None = None, reference_ranges: dict[str, ReferenceRange] | None = None) -> KneeCase:
    """A source image and its prediction; a right knee is the mirror image of the left one (same aTFA)."""
    scheme = load_scheme(phase)
    rows, cols = shape
    g = KneeGeometry(centre=(cols / 2, rows * 0.5), ref_len=0.3 * min(rows, cols / 0.8) * 0.8,
                     atfa_deg=atfa_deg, rotation_deg=rotation_deg)
    pts = left_knee_landmarks(scheme, g)
    if laterality == "R":
        pts = mirror_points(pts, cols)
    image = knee_image(pts, scheme, shape)
    source = dx_source(image, laterality=laterality, monochrome1=monochrome1, study_uid=study_uid)
    return KneeCase(source, make_prediction(scheme, pts, laterality, confidence=confidence,
                                            reference_ranges=reference_ranges), g)
