"""What every result object shares: the node's identity, a safe working copy of the source, UIDs and series.

Coordinates: a ``KneePrediction`` gives points as ``[column, row]`` of pixel *centres*, 0-based (the centre of
the top-left pixel is ``[0, 0]``). DICOM 2D spatial coordinates (SR SCOORD, presentation-state PIXEL units)
are ``(column, row)`` with the *top-left corner* of the top-left pixel at ``(0, 0)``, so that pixel's centre is
``(0.5, 0.5)``: :func:`dicom_coords` adds 0.5 to both.
"""

from __future__ import annotations

import copy
import hashlib
import socket
import uuid
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pydicom
from highdicom import ContributingEquipment, SpecificCharacterSetValues
from pydicom.valuerep import DA, DT, TM

from dicomnode import software_version
from dicomnode.outputs import codes
from dicomnode.vocabulary import OUTPUT_KIND_NAMES, output_kind
from model.result import KneePrediction

MANUFACTURER = "KneeAlign"
MODEL_NAME = "KneeAlign DICOM node"
PIXEL_CENTRE_OFFSET = 0.5


KINDS = OUTPUT_KIND_NAMES  # the order in which build_outputs returns them
LOW_CONFIDENCE_SUFFIX = " - LOW CONFIDENCE"

# Attributes highdicom's SR, SC and PR constructors read from the source without a default. Type 2 in the
# source's IOD: they may be absent, but must be present (possibly empty) in what we build.
_TYPE2_FILL = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "InstanceNumber")
_TYPE1_NEEDED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Rows", "Columns")
_BULK_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float/Double Float Pixel Data


_UID_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c1e-9a57-0b3e8f5d2c71")  # this project's, for name-based UIDs


def derived_uid(*parts: str) -> str:
    """A UID under the 2.25 root from a name-based (SHA-1, version 5) UUID of ``parts``: equal parts, equal UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


class OutputError(ValueError):
    """The source image or the prediction cannot be turned into a result object; the message says why."""


@dataclass(frozen=True)
class NodeIdentity:
    """Who made the object: written as equipment, device observer and contributing equipment."""

    manufacturer: str
    model_name: str
    software_version: str
    device_uid: str
    device_name: str
    serial_number: str
    institution_name: str | None = None

    @classmethod
    def for_node(cls, ae_title: str = "KNEEALIGN", institution_name: str | None = None) -> NodeIdentity:
        """A stable identity for this host and AE title (the device UID is derived from both)."""
        host = socket.gethostname()
        uid = derived_uid("KneeAlign device", host, ae_title)
        serial = hashlib.sha256(f"{host}/{ae_title}".encode()).hexdigest()[:12].upper()
        return cls(MANUFACTURER, MODEL_NAME, software_version(), uid, ae_title, serial, institution_name)


@lru_cache(maxsize=1)
def default_identity() -> NodeIdentity:
    return NodeIdentity.for_node()


@dataclass(frozen=True)
class AlgorithmIdentity:
    """The weights that made a result (IHE AI Results: which model produced this number).

    ``sha256`` is the checksum of the weights file; ``device_uid`` changes whenever it (or the node's
    software) changes, so two results with the same Device UID come from the same code and weights.
    """

    name: str
    version: str
    sha256: str | None
    node_version: str

    @classmethod
    def of(cls, prediction: KneePrediction, identity: NodeIdentity) -> AlgorithmIdentity:
        return cls(prediction.model_name, prediction.model_version, prediction.model_sha256,
                   identity.software_version)

    @property
    def checksum_text(self) -> str:
        return f"sha256:{self.sha256}" if self.sha256 else "checksum unknown (weights not loaded from a file)"

    @property
    def software_version(self) -> str:
        """The weights in one Software Versions value (LO: at most 64 characters, so a short checksum)."""
        short = f" sha256:{self.sha256[:16]}" if self.sha256 else ""
        return f"{self.name} weights {self.version}{short}"[:64]

    @property
    def device_uid(self) -> str:
        return derived_uid("KneeAlign algorithm", self.node_version, self.name, self.version, self.sha256 or "")


def software_versions(identity: NodeIdentity, algorithm: AlgorithmIdentity) -> list[str]:
    """Software Versions: the node's, then the weights' (name, version, short checksum)."""
    return [f"{identity.model_name} {identity.software_version}"[:64], algorithm.software_version]


def equipment_attributes(identity: NodeIdentity, algorithm: AlgorithmIdentity) -> dict[str, object]:
    """Keyword arguments of highdicom constructors describing the node as the equipment that made the object."""
    return {
        "manufacturer": identity.manufacturer,
        "manufacturer_model_name": identity.model_name,
        "software_versions": software_versions(identity, algorithm),
        "device_serial_number": identity.serial_number,
        "institution_name": identity.institution_name,
        "contributing_equipment": [processing_equipment(identity, algorithm)],
    }


def processing_equipment(identity: NodeIdentity, algorithm: AlgorithmIdentity) -> ContributingEquipment:
    """The node running the weights, as Contributing Equipment with purpose "Processing Equipment" (IHE AIR):
    Software Versions name the node and the weights, the Device UID follows the weights' checksum."""
    item = ContributingEquipment(
        manufacturer=identity.manufacturer,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=identity.model_name,
        software_versions=software_versions(identity, algorithm),
        device_serial_number=identity.serial_number,
        institution_name=identity.institution_name,
        station_name=identity.device_name[:16],
        contribution_description=(f"Landmark detection and knee alignment measurement with weights "
                                  f"{algorithm.name} {algorithm.version} ({algorithm.checksum_text})")[:1024],
    )
    # Device UID in Contributing Equipment is Type 3 in PS3.3 Table C.12-1 (current editions); dicom3tools
    # 2022 predates it and warns "not present in standard DICOM IOD" for this one attribute.
    item.DeviceUID = algorithm.device_uid
    return item


def set_device_uid(ds: pydicom.Dataset, target: Target) -> None:
    """General Equipment's Device UID: the algorithm's, the same as in the Contributing Equipment item."""
    ds.DeviceUID = target.algorithm.device_uid


def working_copy(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source's attributes without its pixel data, with missing Type 2 attributes added empty.

    highdicom reads attributes such as AccessionNumber or PatientBirthDate directly and fails with an
    AttributeError on a source that legitimately lacks them; this copy has them all. Raises
    :class:`OutputError` when an attribute the results cannot do without (UIDs, image size) is missing.
    """
    missing = [kw for kw in _TYPE1_NEEDED if not source.get(kw)]
    if missing:
        raise OutputError(f"source image lacks required attribute(s): {', '.join(missing)}")
    ref = pydicom.Dataset()
    for elem in source:
        if elem.tag not in _BULK_TAGS:
            ref.add(copy.deepcopy(elem))
    if hasattr(source, "file_meta"):
        ref.file_meta = copy.deepcopy(source.file_meta)
    for keyword in _TYPE2_FILL:
        if keyword not in ref or ref[keyword].value is None:
            setattr(ref, keyword, None)
    _blank_unparseable_dates(ref)
    charset = character_set(source)
    if charset is None:
        ref.pop("SpecificCharacterSet", None)
    else:
        ref.SpecificCharacterSet = charset
    ref.SamplesPerPixel = source.get("SamplesPerPixel", 1)
    return ref


_WRITABLE_CHARSETS = {value.value for value in SpecificCharacterSetValues}
_DEFAULT_REPERTOIRE = ("", "ISO_IR 6")  # absent, empty, or the common (non-standard) "ISO_IR 6"


def character_set(source: pydicom.Dataset) -> list[str] | str | None:
    """The source's Specific Character Set in a form highdicom writes: None for the default repertoire (absent,
    empty, or "ISO_IR 6"); an empty first value followed by code extensions becomes "ISO 2022 IR 6", which is
    what it means (PS3.3 C.12.1.1.2). Raises :class:`OutputError` for a value no result can be written in."""
    raw = source.get("SpecificCharacterSet")
    values = [str(v).strip() for v in ([raw] if isinstance(raw, (str, bytes)) else list(raw or []))]
    if all(v in _DEFAULT_REPERTOIRE for v in values):
        return None
    if values[0] == "":
        values[0] = SpecificCharacterSetValues.DEFAULT_REPERTOIRE_CODE_EXTENSIONS.value
    extensions_ok = len(values) == 1 or all(v.startswith("ISO 2022 ") for v in values)  # PS3.3 C.12.1.1.2
    if not extensions_ok or not all(v in _WRITABLE_CHARSETS for v in values):
        raise OutputError("SpecificCharacterSet is not a character set the results can be written in")
    return values[0] if len(values) == 1 else values


_DATE_TYPES = {"DA": DA, "TM": TM, "DT": DT}


def _blank_unparseable_dates(ds: pydicom.Dataset) -> None:
    """Empty the top-level DA/TM/DT values that do not follow the standard (e.g. ``1961-02-03``).

    highdicom parses them and would fail the whole result over a malformed birth date, quoting the value.
    """
    for elem in ds:
        parse = _DATE_TYPES.get(elem.VR)
        if parse is None or elem.value in (None, ""):
            continue
        try:
            parse(str(elem.value))
        except ValueError:
            elem.value = ""


def prediction_digest(prediction: KneePrediction) -> str:
    """A short hash of everything a result object says, so equal results get equal UIDs."""
    h = hashlib.sha256()
    h.update(np.round(np.asarray(prediction.landmarks, dtype=np.float64), 3).tobytes())
    h.update(np.round(np.asarray(prediction.landmark_confidence, dtype=np.float64), 4).tobytes())
    fields = (prediction.scheme_id, prediction.phase, prediction.laterality, prediction.laterality_source,
              f"{prediction.confidence:.4f}", f"{prediction.confidence_threshold:.4f}",
              prediction.model_name, prediction.model_version, prediction.model_sha256 or "")
    h.update("|".join(fields).encode())
    return h.hexdigest()[:32]


def output_uids(source: pydicom.Dataset, prediction: KneePrediction, kind: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) for the ``kind`` result of ``prediction`` on ``source``.

    Derived from the source SOP Instance UID, the kind and the prediction's content: building the same result
    twice (a retry after a crash) gives the same UIDs, so a PACS stores it once; any different result gets
    different UIDs.
    """
    output_kind(kind)  # ValueError for an unknown kind
    base = [str(source.SOPInstanceUID), kind, prediction_digest(prediction)]
    return derived_uid(*base, "series"), derived_uid(*base, "instance")


@dataclass(frozen=True)
class Target:
    """Everything a builder needs besides the content: who makes it, the source copy, where it goes."""

    identity: NodeIdentity
    ref: pydicom.Dataset  # working copy of the source (see working_copy)
    series_uid: str
    sop_instance_uid: str
    series_number: int
    series_description: str
    algorithm: AlgorithmIdentity

    @property
    def equipment(self) -> dict[str, object]:
        """Keyword arguments for highdicom constructors: see :func:`equipment_attributes`."""
        return equipment_attributes(self.identity, self.algorithm)


def target(source: pydicom.Dataset, prediction: KneePrediction, kind: str, *, series_uid: str | None = None,
           sop_instance_uid: str | None = None, identity: NodeIdentity | None = None) -> Target:
    """Resolve a builder's optional arguments: default identity, derived UIDs, the kind's series."""
    default_series, default_sop = output_uids(source, prediction, kind)
    identity = identity or default_identity()
    return Target(identity, working_copy(source), series_uid or default_series, sop_instance_uid or default_sop,
                  series_number(kind), series_description(kind, prediction), AlgorithmIdentity.of(prediction, identity))


def series_number(kind: str) -> int:
    return output_kind(kind).series_number


def series_description(kind: str, prediction: KneePrediction) -> str:
    """E.g. "KneeAlign aTFA report L" or "KneeAlign aTFA overlay R - LOW CONFIDENCE" (a viewer's series list
    shows the status before anything is opened)."""
    text = f"{output_kind(kind).series_description} {prediction.laterality}"
    return text + (LOW_CONFIDENCE_SUFFIX if prediction.low_confidence else "")


def dicom_coords(points: np.ndarray) -> np.ndarray:
    """Prediction pixel-centre coordinates ``[column, row]`` to DICOM 2D image coordinates (add 0.5)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise OutputError(f"expected an (N, 2) array of [column, row], got shape {pts.shape}")
    return pts + PIXEL_CENTRE_OFFSET


def patient_orientation(source: pydicom.Dataset) -> tuple[str, str]:
    """The source's Patient Orientation, or the one of a conventionally displayed AP (PA) view when absent."""
    value = source.get("PatientOrientation")
    if value and len(value) == 2 and all(value):
        return str(value[0]), str(value[1])
    return ("R", "F") if str(source.get("ViewPosition", "")).upper() == "PA" else ("L", "F")
