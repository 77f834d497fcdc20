"""Which DICOM images the method is for: projection radiographs (DX or CR, or a DX/CR SOP class) of the knee in an
AP or PA view, told from their attributes. The node records everything else as skipped with the reason returned
here, never as failed; ``knee-train preannotate`` skips the same images, so that a hospital's folder of mixed views
gives annotations of knee AP radiographs only.

Body part: BodyPartExamined KNEE; when it is missing or empty, a knee word in the study or series description
or the protocol name will do. View: ViewPosition AP or PA, or missing (many modalities leave it out).

Reasons name the attribute, never its value: values are free text from the sender (they may carry patient
data, or control characters that would forge log lines) and reasons are logged and stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pydicom

PROJECTION_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
}
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
    has_pixels = any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    return skip_reason_for_tags(lambda keyword: _text(ds, keyword), has_pixels)


def skip_reason_for_tags(text: Callable[[str], str], has_pixels: bool = True) -> str | None:
    """:func:`skip_reason` from the attributes alone: ``text(keyword)`` gives an attribute's value as stripped text
    ("" if absent). The receiver uses it on the attributes it saved at receipt (the images it stores have pixel
    data), so that an image that is not for us never gets a job."""
    modality = text("Modality").upper()
    if modality not in PROJECTION_MODALITIES and text("SOPClassUID") not in PROJECTION_SOP_CLASSES:
        return "Modality is not DX or CR, nor the SOP class a DX or CR one"
    if not has_pixels:
        return "no pixel data"
    body_part = text("BodyPartExamined").upper()
    if body_part:
        if body_part not in KNEE_BODY_PARTS:
            return "BodyPartExamined is not KNEE"
    else:
        descriptions = " ".join(text(k) for k in ("StudyDescription", "SeriesDescription", "ProtocolName"))
        if not KNEE_WORDS.search(descriptions):
            return "no BodyPartExamined and no knee in the study/series description or protocol name"
    view = text("ViewPosition").upper()
    if view and view not in ACCEPTED_VIEWS:
        return "ViewPosition is not AP or PA"
    return None
