"""Helpers shared by the node's tests: fake receiver arrivals and small DICOM images with chosen tags."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class FakeArrival:
    """The fields the receiver reports for a stored instance (for DB tests without a network)."""

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str = "1.2.826.0.1.3680043.8.498.1"
    sop_class_uid: str = DigitalXRayImageStorageForPresentation
    path: str = "/nonexistent.dcm"
    size_bytes: int = 1
    calling_ae: str = "ORTHANC"
    peer_name: str | None = "pacs"


def arrival(study: str = "1.2.3", sop: str | None = None, **fields) -> FakeArrival:
    return FakeArrival(sop_instance_uid=sop or generate_uid(), study_instance_uid=study, **fields)


def radiograph_dataset(*, modality: str = "DX", body_part: str | None = "KNEE", view: str | None = "AP",
                       laterality: str = "L", pixels: np.ndarray | None = None,
                       sop_class_uid: str = DigitalXRayImageStorageForPresentation,
                       study_uid: str | None = None, description: str = "KNEE AP") -> pydicom.Dataset:
    """A small, valid single-frame MONOCHROME2 image with the tags the node's filter reads.

    ``pixels`` defaults to seeded 12-bit noise (not a knee: the model gives a low-confidence answer; a smooth
    ramp would make an untrained global stage find no knee at all).
    """
    if pixels is None:
        pixels = np.random.default_rng(7).integers(0, 4096, (256, 200)).astype(np.uint16)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Knee", "KA0001", "19600101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20250101", "120000", "ACC1", "1"
    ds.ReferringPhysicianName, ds.StudyDescription, ds.SeriesDescription = "", description, description
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, 1
    ds.Manufacturer = "KneeAlign tests"
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view is not None:
        ds.ViewPosition = view
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.PatientOrientation = ["R", "F"] if laterality == "L" else ["L", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsStored = 12 if pixels.dtype == np.uint16 else 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.DetectorType = "SCINTILLATOR"
    ds.PixelData = pixels.tobytes()
    return ds


def set_raw(ds: pydicom.Dataset, keyword_or_tag: str | int, vr: str, value: bytes | str) -> pydicom.Dataset:
    """Put an element in ``ds`` exactly as given, bypassing pydicom's conversion and validation (for values no
    valid dataset would hold: NumberOfFrames "abc", an unknown VR...). Odd lengths are padded with a space."""
    tag = Tag(tag_for_keyword(keyword_or_tag) if isinstance(keyword_or_tag, str) else keyword_or_tag)
    data = value.encode("latin-1") if isinstance(value, str) else value
    if len(data) % 2:
        data += b" "
    ds[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
    return ds


def write(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # raw hostile values (set_raw) make pydicom warn as it writes them
        warnings.simplefilter("ignore", UserWarning)
        ds.save_as(path, enforce_file_format=True)
    return path


def synthetic_knee(seed: int, spacing_mm: float | None = 0.5, study_uid: str | None = None,
                   laterality: str | None = None) -> pydicom.Dataset:
    """A synthetic AP knee DX from ``train.synth`` (UIDs derived from ``seed``: use one seed per image).
    ``spacing_mm=None`` renders at the detector's own spacing (a full-size, ~15 MB radiograph)."""
    from train.synth.cases import render_case, sample_case
    from train.synth.dicom_writer import build_dataset

    ds = build_dataset(render_case(sample_case(seed, laterality=laterality), pixel_spacing_mm=spacing_mm))
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    return ds
