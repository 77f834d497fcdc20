"""Write a synthetic radiograph as a real DICOM instance (DX For Presentation, or CR) plus its ground truth.

The dataset carries the modules its IOD asks for (Patient, General Study, General Series, DX Series / CR
Series, General Equipment, General Image, Image Pixel, DX Anatomy Imaged, DX Image, DX Detector, VOI LUT,
Acquisition Context, SOP Common), with synthetic, non-identifying values (patient ``SYNTH^KNEE^<n>``).
UIDs are derived from the case seed and from what makes the instance what it is (its pixels' digest, modality,
laterality tags), so a file is reproducible on its own and two different images never share a UID. The ground
truth goes to ``<stem>.json`` beside the ``.dcm``. ``laterality_tags=False`` leaves out Image Laterality and
Laterality (to exercise laterality detection; a DX instance without Image Laterality is not conformant).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from train.synth.cases import GENERATOR_VERSION, SynthImage

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")
COMPRESSIONS = {None: ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}
STUDY_DATE, STUDY_TIME = "20250101", "120000"


def _uid(identity: list[str], what: str) -> UID:
    return generate_uid(entropy_srcs=[*identity, what])


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _window(img: SynthImage) -> tuple[float, float]:
    """A VOI window over the 1st to 99.5th percentile of the stored values (subsampled)."""
    sample = img.image[::7, ::7]
    lo, hi = np.percentile(sample, [1.0, 99.5])
    width = max(float(hi - lo), 2.0)
    return float(lo + hi) / 2.0, width


def build_dataset(img: SynthImage, modality: str | None = None, laterality_tags: bool = True,
                  number: int = 1) -> Dataset:
    """The DICOM dataset of ``img`` (uncompressed, explicit VR little endian)."""
    case = img.case
    modality = modality or case.acquisition.modality
    if modality not in ("DX", "CR"):
        raise ValueError(f"modality must be 'DX' or 'CR', got {modality!r}")
    sop_class = DX_FOR_PRESENTATION if modality == "DX" else CR_IMAGE
    seed = case.seed
    # The UIDs follow everything that makes the instance what it is: the renderer (each has its own namespace), the
    # seed, the pixels (the phase, the distribution and the generator's variants draw other images from one seed),
    # the modality and the laterality tags. Two different images never share a UID (a PACS would keep only one);
    # the same image regenerated gets the same UIDs.
    namespace = getattr(case, "uid_namespace", "kneealign-synth")
    pixels = hashlib.sha256(np.ascontiguousarray(img.image, dtype="<u2").tobytes()).hexdigest()
    identity = [namespace, str(seed), pixels, modality, "tags" if laterality_tags else "no-tags"]

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(identity, "instance")
    ds.StudyInstanceUID = _uid(identity, "study")
    ds.SeriesInstanceUID = _uid(identity, "series")
    # Patient (synthetic, non-identifying)
    ds.PatientName = f"SYNTH^KNEE^{number:04d}"
    ds.PatientID = f"SYNTH-{seed % 10**12:012d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    # General Study
    ds.StudyDate, ds.StudyTime = STUDY_DATE, STUDY_TIME
    ds.ReferringPhysicianName = ""
    ds.StudyID = "SYNTH"
    ds.AccessionNumber = ""
    ds.StudyDescription = "Synthetic AP knee radiograph"
    # General Series + DX / CR Series
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = STUDY_DATE, STUDY_TIME
    projected = " (3D projection)" if namespace != "kneealign-synth" else ""
    ds.SeriesDescription = f"KneeAlign synthetic {img.phase}{projected}"
    ds.BodyPartExamined = "KNEE"
    ds.ViewPosition = "AP"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        view = _code("399348003", "SCT", "antero-posterior")
        view.ViewModifierCodeSequence = Sequence()
        ds.ViewCodeSequence = Sequence([view])
        ds.AcquisitionContextSequence = Sequence()
    ds.PatientOrientation = ["L", "F"]  # columns toward the patient's left, rows toward the feet (AP view)
    # General Equipment
    ds.Manufacturer = "KneeAlign synthetic generator"
    ds.ManufacturerModelName = "train.synth"
    ds.SoftwareVersions = GENERATOR_VERSION
    ds.InstitutionName = "SYNTHETIC"
    # General Image
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = STUDY_DATE, STUDY_TIME
    ds.AcquisitionDate, ds.AcquisitionTime = STUDY_DATE, STUDY_TIME
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Anatomy
    ds.AnatomicRegionSequence = Sequence([_code("72696002", "SCT", "Knee")])
    if laterality_tags:
        if modality == "DX":
            ds.ImageLaterality = img.laterality
        else:
            ds.Laterality = img.laterality
    # Image Pixel
    rows, cols = img.image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = img.photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = img.bits_stored
    ds.HighBit = img.bits_stored - 1
    ds.PixelRepresentation = 0
    spacing = [float(f"{img.pixel_spacing_mm:.6g}")] * 2
    ds.ImagerPixelSpacing = spacing
    if modality == "DX":
        inverse = img.photometric == "MONOCHROME1"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if inverse else -1  # +1: lower values = less beam intensity
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.PresentationLUTShape = "INVERSE" if inverse else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.PositionerType = ""
    else:  # as many CR systems do: the detector's spacing repeated, without a calibration type (none was made)
        ds.PixelSpacing = spacing
    centre, width = _window(img)
    ds.WindowCenter, ds.WindowWidth = round(centre, 1), round(width, 1)
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = np.ascontiguousarray(img.image, dtype="<u2").tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "KNEEALIGN_SYN"
    ds.file_meta = meta
    return ds


def ground_truth(img: SynthImage, sop_instance_uid: str) -> dict:
    """The ground-truth record written beside each DICOM file."""
    rows, cols = img.image.shape
    return {
        "sop_instance_uid": str(sop_instance_uid),
        "scheme": img.scheme_id,
        "phase": img.phase,
        "laterality": img.laterality,
        "pixel_spacing_mm": [img.pixel_spacing_mm, img.pixel_spacing_mm],
        "rows": rows,
        "columns": cols,
        "photometric": img.photometric,
        "bits_stored": img.bits_stored,
        "landmarks": [[round(float(x), 4), round(float(y), 4)] for x, y in img.landmarks],
        "visible": [bool(v) for v in img.visible],
        "atfa_fts_deg": float(img.atfa_fts_deg),
        "atfa_fnts_deg": float(img.atfa_fnts_deg),
        "generator_version": getattr(img.case, "generator_version", GENERATOR_VERSION),
        "seed": int(img.case.seed),
        "hard": bool(img.case.hard),
        "parameters": img.case.to_dict(),  # every sampled anatomy and acquisition parameter
    }


def write_dicom(img: SynthImage, path: str | Path, modality: str | None = None, laterality_tags: bool = True,
                compress: str | None = None, number: int = 1) -> Path:
    """Write ``img`` to ``path`` (``.dcm``) and its ground truth to ``<stem>.json``; returns the DICOM path.
    ``compress``: None (explicit VR little endian), ``"jpeg2000"`` (lossless) or ``"rle"``."""
    if compress not in COMPRESSIONS:
        raise ValueError(f"compress must be one of {sorted(k or 'None' for k in COMPRESSIONS)}, got {compress!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = build_dataset(img, modality, laterality_tags, number)
    if compress is not None:
        ds.compress(COMPRESSIONS[compress], generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    truth = ground_truth(img, ds.SOPInstanceUID)
    truth["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
    truth["modality"] = ds.Modality
    truth["laterality_tags"] = laterality_tags
    path.with_suffix(".json").write_text(json.dumps(truth, indent=1))
    return path
