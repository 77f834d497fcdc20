"""Which received instances are processed: projection radiographs (DX or CR, or a DX/CR SOP class) of the knee
in an AP or PA view. Everything else is recorded as skipped with the reason returned here, never as failed.

Body part: BodyPartExamined KNEE; when it is missing or empty, a knee word in the study or series description
or the protocol name will do. View: ViewPosition AP or PA, or missing (many modalities leave it out).

Reasons name the attribute, never its value: values are free text from the sender (they may carry patient
data, or control characters that would forge log lines) and reasons are logged and stored.
"""

from __future__ import annotations

import re

import pydicom

from dicomnode.outputs.image_library import PROJECTION_SOP_CLASSES

PROJECTION_MODALITIES = {"DX", "CR"}
KNEE_BODY_PARTS = {"KNEE"}
ACCEPTED_VIEWS = {"AP", "PA"}
# "knee" in English, German, French, Spanish, Italian, Portuguese, Dutch; whole words only.
KNEE_WORDS = re.compile(r"\b(knee|knie|genou|rodilla|ginocchio|joelho|kniegelenk)s?\b", re.IGNORECASE)


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value is not None else ""


def skip_reason(ds: pydicom.Dataset) -> str | None:
    """None if ``ds`` should be processed, else a short sentence saying why not."""
    modality = _text(ds, "Modality").upper()
    sop_class = _text(ds, "SOPClassUID")
    if modality not in PROJECTION_MODALITIES and sop_class not in PROJECTION_SOP_CLASSES:
        return "Modality is not DX or CR, nor the SOP class a DX or CR one"
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "no pixel data"
    body_part = _text(ds, "BodyPartExamined").upper()
    if body_part:
        if body_part not in KNEE_BODY_PARTS:
            return "BodyPartExamined is not KNEE"
    else:
        descriptions = " ".join(_text(ds, k) for k in ("StudyDescription", "SeriesDescription", "ProtocolName"))
        if not KNEE_WORDS.search(descriptions):
            return "no BodyPartExamined and no knee in the study/series description or protocol name"
    view = _text(ds, "ViewPosition").upper()
    if view and view not in ACCEPTED_VIEWS:
        return "ViewPosition is not AP or PA"
    return None
