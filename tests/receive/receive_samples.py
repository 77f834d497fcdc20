"""Small synthetic DICOM objects for the receiver/SCU tests and the ingest benchmark, and Part 10 byte helpers.

Not knees: flat gradients with the header attributes the receiver reads. Kept separate from the real synthetic
knee generator (train/synth/), which these tests must not depend on.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

SOP_CLASS_BY_MODALITY = {
    "DX": DigitalXRayImageStorageForPresentation,
    "CR": ComputedRadiographyImageStorage,
    "CT": CTImageStorage,
}


def _base(sop_class: str, modality: str, study_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Receiver^Test"
    ds.PatientID = "RCV-0001"
    ds.StudyDate, ds.StudyTime = "20250102", "080000"
    ds.Modality = modality
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    return ds


def image_dataset(modality: str = "DX", rows: int = 64, columns: int = 48, *, study_uid: str | None = None,
                  body_part: str = "KNEE", view: str = "AP", laterality: str = "R", seed: int = 0) -> Dataset:
    """A valid single-frame 16-bit MONOCHROME2 image of ``modality`` (DX, CR or CT), Explicit VR Little Endian."""
    ds = _base(SOP_CLASS_BY_MODALITY[modality], modality, study_uid)
    ds.BodyPartExamined, ds.ViewPosition, ds.ImageLaterality = body_part, view, laterality
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ramp = np.add.outer(np.arange(rows, dtype=np.uint32) * 13, np.arange(columns, dtype=np.uint32) * 7)
    noise = np.random.default_rng(seed).integers(0, 64, size=(rows, columns), dtype=np.uint32)
    ds.PixelData = ((ramp + noise) % 4096).astype(np.uint16).tobytes()
    return ds


def compressed(ds: Dataset, transfer_syntax: str) -> Dataset:
    """``ds`` re-encoded in a compressed transfer syntax (e.g. JPEG 2000 Lossless) with pydicom's encoders."""
    ds.compress(transfer_syntax, ds.pixel_array, generate_instance_uid=False)
    return ds


def text_sr_dataset() -> Dataset:
    """A minimal Basic Text SR: a storage object without pixel data."""
    ds = _base(BasicTextSRStorage, "SR", None)
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.ContinuityOfContent = "SEPARATE"
    return ds


def write_part10(ds: Dataset, path: Path) -> Path:
    """Save ``ds`` as a DICOM Part 10 file (preamble, file meta) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path, inflate: bool = False) -> bytes:
    """The encoded dataset of a Part 10 file: everything after the preamble and the file meta group.

    With ``inflate``, a Deflated Explicit VR Little Endian dataset is returned inflated (two deflaters may
    produce different streams for the same dataset).
    """
    raw = path.read_bytes()
    meta = dcmread(path, stop_before_pixels=True).file_meta
    # 128-byte preamble + "DICM" + the group length element (12 bytes) + the group's value length
    encoded = raw[132 + 12 + int(meta.FileMetaInformationGroupLength):]
    if inflate and meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(encoded)
    return encoded


def transfer_syntax_of(path: Path) -> UID:
    return dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
