"""Which images the node processes, and the reason it gives for the others."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForProcessing,
)

from model.selection import skip_reason
from tests.node.nodehelpers import CT_IMAGE_STORAGE, radiograph_dataset


@pytest.mark.parametrize("changes", [
    {},
    {"modality": "CR", "sop_class_uid": ComputedRadiographyImageStorage},
    {"sop_class_uid": DigitalXRayImageStorageForProcessing},
    {"modality": "OT"},  # a DX SOP class with an odd modality is still a radiograph
    {"view": "PA"},
    {"view": None},
    {"body_part": None, "description": "Knie links a.p."},
    pytest.param({"body_part": "knee"}, marks=pytest.mark.filterwarnings("ignore:Invalid value for VR CS")),
])
def test_knee_ap_radiographs_are_processed(changes):
    assert skip_reason(radiograph_dataset(**changes)) is None


@pytest.mark.parametrize("changes, reason", [
    ({"modality": "CT", "sop_class_uid": CT_IMAGE_STORAGE}, "Modality is not DX or CR"),
    ({"body_part": "CHEST"}, "BodyPartExamined is not KNEE"),
    ({"view": "LL"}, "ViewPosition is not AP or PA"),
    ({"body_part": None, "description": "Thorax"}, "no BodyPartExamined and no knee"),
    ({"body_part": None, "description": "Kneecap sleeve"}, "no BodyPartExamined and no knee"),
])
def test_other_images_are_skipped_with_the_reason(changes, reason):
    assert reason in skip_reason(radiograph_dataset(**changes))


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize("changes", [
    {"modality": "CT\r\nFORGED", "sop_class_uid": CT_IMAGE_STORAGE},
    {"body_part": "SECRETPART\nFORGED"},
    {"view": "SECRETVIEW\r"},
])
def test_skip_reasons_never_quote_the_attribute_value(changes):
    reason = skip_reason(radiograph_dataset(**changes))
    assert reason and "SECRET" not in reason and "FORGED" not in reason and "\n" not in reason and "\r" not in reason


def test_an_image_without_pixels_is_skipped():
    ds = radiograph_dataset()
    del ds.PixelData
    assert skip_reason(ds) == "no pixel data"


RECEIPT_CASES = [
    {}, {"modality": "CR", "sop_class_uid": ComputedRadiographyImageStorage}, {"modality": "OT"}, {"view": None},
    {"body_part": None, "description": "Knie links a.p."}, {"modality": "CT", "sop_class_uid": CT_IMAGE_STORAGE},
    {"body_part": "CHEST"}, {"view": "LL"}, {"body_part": None, "description": "Thorax"},
]


@pytest.mark.parametrize("changes", RECEIPT_CASES)
def test_the_attributes_saved_at_receipt_decide_as_the_whole_dataset_does(changes):
    """The receiver skips images that are not for us from the attributes it saved (no job); the worker decides
    from the whole dataset. Both must agree on every image."""
    from datetime import UTC, datetime
    from pathlib import Path

    from dicomnode.receive.instance import StoredInstance, filter_attributes
    from model.selection import skip_reason_for_tags

    ds = radiograph_dataset(**changes)
    stored = StoredInstance(Path("/x.dcm"), str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.StudyInstanceUID),
                            str(ds.SeriesInstanceUID), "MODALITY", "modality", "1.2.840.10008.1.2.1", 1,
                            datetime.now(UTC), **filter_attributes(ds))
    assert skip_reason_for_tags(stored.text) == skip_reason(ds)
