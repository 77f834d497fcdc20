"""The SR's Image Library (TID 1600) for a projection radiograph, built from what the source really has.

highdicom's own library entry (TID 1602/1603 for CR, DX and the other projection modalities) reads
``PatientOrientation`` and ``ImagerPixelSpacing`` unconditionally, so a CR with only Pixel Spacing, or an image
with no spacing or an empty Patient Orientation (both allowed by the standard), would get no SR at all. This
entry writes each descriptor only when the source has a usable value:

- Modality (from the SOP class, as highdicom does), Pixel Data Rows and Columns: always;
- Frame of Reference UID: when present;
- Patient Orientation Row and Column: when Patient Orientation has two non-empty values;
- Horizontal and Vertical Pixel Spacing: from Imager Pixel Spacing (TID 1603 defines them at the front plane of
  the image receptor, which is what Imager Pixel Spacing is). Pixel Spacing of a projection image may be
  calibrated to another plane, so it is never written under these concepts.

Which spacing the measurement used (Pixel Spacing, Imager Pixel Spacing or none) is stated in the knee group
(see :func:`spacing_statement`), where a reader of the measurement sees it.
"""

from __future__ import annotations

import math

import pydicom
from highdicom.sr import (
    CodeContentItem,
    ContainerContentItem,
    ContentSequence,
    ImageContentItem,
    NumContentItem,
    RelationshipTypeValues,
    TextContentItem,
    UIDRefContentItem,
)
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from model.result import KneePrediction
from model.selection import PROJECTION_SOP_CLASSES

_ACQ = RelationshipTypeValues.HAS_ACQ_CONTEXT
_PIXELS = Code("{pixels}", "UCUM", "Pixels")
_SOURCE = Code("260753009", "SCT", "Source")
_CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"
_SPACING_NAMES = {"PixelSpacing": "Pixel Spacing (0028,0030)",
                  "ImagerPixelSpacing": "Imager Pixel Spacing (0018,1164)"}



def _two_positive_numbers(value) -> tuple[float, float] | None:
    if value is None or isinstance(value, (str, bytes)) or len(value) != 2:
        return None
    try:
        numbers = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return numbers if all(0 < n and math.isfinite(n) for n in numbers) else None


def _orientation(source: pydicom.Dataset) -> tuple[str, str] | None:
    value = source.get("PatientOrientation")
    if value is None or isinstance(value, (str, bytes)) or len(value) != 2:
        return None
    row, column = str(value[0]).strip(), str(value[1]).strip()
    return (row, column) if row and column else None


def coded_modality(source: pydicom.Dataset) -> Code:
    """CID 29 code of a projection radiograph: from the SOP class when it is a CR or DX one, else from Modality
    (the node processes only DX and CR images, see ``model.selection``)."""
    sop_class = str(source.SOPClassUID)
    if sop_class in PROJECTION_SOP_CLASSES:
        is_cr = sop_class == _CR_SOP_CLASS
    else:
        is_cr = str(source.get("Modality", "")).strip().upper() == "CR"
    return codes.cid29.ComputedRadiography if is_cr else codes.cid29.DigitalRadiography


def entry_descriptors(source: pydicom.Dataset) -> list:
    """TID 1602 (+ 1603) descriptors of ``source`` that its attributes support."""
    items: list = [CodeContentItem(name=codes.DCM.Modality, value=coded_modality(source), relationship_type=_ACQ)]
    if "FrameOfReferenceUID" in source:
        items.append(UIDRefContentItem(name=codes.DCM.FrameOfReferenceUID, value=source.FrameOfReferenceUID,
                                       relationship_type=_ACQ))
    items += [NumContentItem(name=codes.DCM.PixelDataRows, value=int(source.Rows), unit=_PIXELS,
                             relationship_type=_ACQ),
              NumContentItem(name=codes.DCM.PixelDataColumns, value=int(source.Columns), unit=_PIXELS,
                             relationship_type=_ACQ)]
    orientation = _orientation(source)
    if orientation is not None:
        items += [TextContentItem(name=codes.DCM.PatientOrientationRow, value=orientation[0],
                                  relationship_type=_ACQ),
                  TextContentItem(name=codes.DCM.PatientOrientationColumn, value=orientation[1],
                                  relationship_type=_ACQ)]
    imager = _two_positive_numbers(source.get("ImagerPixelSpacing"))
    if imager is not None:
        items += [NumContentItem(name=codes.DCM.HorizontalPixelSpacing, value=imager[1],
                                 unit=codes.UCUM.Millimeter, relationship_type=_ACQ),
                  NumContentItem(name=codes.DCM.VerticalPixelSpacing, value=imager[0],
                                 unit=codes.UCUM.Millimeter, relationship_type=_ACQ)]
    return items


def image_library(source: pydicom.Dataset) -> ContainerContentItem:
    """The Image Library container (CONTAINS one Image Library Group with the source image)."""
    image = ImageContentItem(
        name=_SOURCE,
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=RelationshipTypeValues.CONTAINS)
    image.ContentSequence = ContentSequence(entry_descriptors(source))
    group = ContainerContentItem(name=codes.DCM.ImageLibraryGroup,
                                 relationship_type=RelationshipTypeValues.CONTAINS)
    group.ContentSequence = ContentSequence([image])
    library = ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type=RelationshipTypeValues.CONTAINS)
    library.ContentSequence = ContentSequence([group])
    return library


def spacing_statement(prediction: KneePrediction) -> str:
    """Which spacing the measurement used, in words, e.g. "Pixel Spacing (0028,0030): 0.15 x 0.15 mm (row x
    column)" or "none: pixels taken as square, no check in millimetres"."""
    spacing, source = prediction.pixel_spacing_mm, prediction.pixel_spacing_source
    if spacing is None:
        return "none: the image states no usable pixel spacing; pixels taken as square, no check in millimetres"
    name = _SPACING_NAMES.get(source or "", "pixel spacing")
    return f"{name}: {spacing[0]:.4g} x {spacing[1]:.4g} mm (row x column)"
