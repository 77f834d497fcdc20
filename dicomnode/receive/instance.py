"""What the receiver tells the pipeline about a stored instance, and the header attributes it passes on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


@dataclass(frozen=True)
class StoredInstance:
    """An instance durably stored in the spool, as handed to ``on_stored``."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    calling_ae: str
    peer_name: str
    transfer_syntax: str
    size_bytes: int
    received_at: datetime
    modality: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    study_description: str | None = None
    patient_id: str | None = field(default=None, repr=False)  # never log it

    def text(self, keyword: str) -> str:
        """One of the attributes saved at receipt, by its DICOM keyword, as stripped text ("" if absent)."""
        name = _FIELDS.get(keyword)
        value = getattr(self, name) if name is not None else None
        return str(value).strip() if value is not None else ""


OnStored = Callable[[StoredInstance], None]
# The text attributes saved at receipt for the processing filter: DICOM keyword -> StoredInstance field.
SAVED_ATTRIBUTES = {"Modality": "modality", "BodyPartExamined": "body_part_examined", "ViewPosition": "view_position",
                    "SeriesDescription": "series_description", "ProtocolName": "protocol_name",
                    "StudyDescription": "study_description"}
_FIELDS = {**SAVED_ATTRIBUTES, "SOPClassUID": "sop_class_uid", "Laterality": "laterality"}


def text_attribute(dataset: Dataset, keyword: str) -> str | None:
    """A string attribute as a stripped ``str`` (multiple values joined by backslash), None if absent or empty."""
    value = dataset.get(keyword)
    if value is None:
        return None
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
    return text.strip() or None


def filter_attributes(dataset: Dataset) -> dict[str, str | None]:
    """The attributes the processing filter needs, keyed like the ``StoredInstance`` fields."""
    return {
        **{name: text_attribute(dataset, keyword) for keyword, name in SAVED_ATTRIBUTES.items()},
        "laterality": text_attribute(dataset, "ImageLaterality") or text_attribute(dataset, "Laterality"),
        "patient_id": text_attribute(dataset, "PatientID"),
    }
