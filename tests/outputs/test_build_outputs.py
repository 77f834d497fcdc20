"""All result objects together: order, one study with new series, entity consistency, UIDs, imperfect sources."""

from __future__ import annotations

import dataclasses

import pytest

from dicomnode.outputs import OutputError, build_outputs, kind_of
from dicomnode.outputs.common import KINDS, NodeIdentity, dicom_coords, working_copy
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import dcentvfy, dciodvfy
from tests.outputs.synthetic_knee import knee_case

SR, SC, PR = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.11.1"
TYPE2_REMOVED = ("AccessionNumber", "PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
                 "StudyDate", "StudyTime", "SeriesNumber", "InstanceNumber", "PatientName")


def test_order_is_stable_and_kinds_are_checked(left_case):
    out = build_outputs(left_case.source, left_case.prediction, kinds=("gsps", "sr", "sr"))
    assert [ds.SOPClassUID for ds in out] == [SR, PR]
    every = build_outputs(left_case.source, left_case.prediction, kinds=("gsps", "sc", "landmarks", "sr"))
    assert [kind_of(ds) for ds in every] == ["sr", "landmarks", "sc", "gsps"]
    assert len({ds.SeriesNumber for ds in every}) == 4
    assert [ds.SOPClassUID for ds in build_outputs(left_case.source, left_case.prediction)] == [SR, SC]
    with pytest.raises(ValueError, match="'pdf'"):
        build_outputs(left_case.source, left_case.prediction, kinds=("sr", "pdf"))


def test_same_study_new_series_and_consistent_entities(low_case, tmp_path):
    src = low_case.source
    out = build_outputs(src, low_case.prediction, kinds=("sr", "sc", "gsps"))
    assert {ds.StudyInstanceUID for ds in out} == {src.StudyInstanceUID}
    series = [ds.SeriesInstanceUID for ds in out]
    assert len(set(series)) == 3 and src.SeriesInstanceUID not in series
    for ds in out:
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "StudyDate"):
            assert ds[keyword].value == src[keyword].value, (ds.Modality, keyword)
        assert ds.SeriesDescription.endswith("LOW CONFIDENCE")
    paths = [save(src, tmp_path / "src.dcm")] + [save(ds, tmp_path / f"{ds.Modality}.dcm") for ds in out]
    report = dcentvfy(paths)
    assert report.errors == [], report.output
    # dicom3tools files Accession Number under the Series entity in one of its IOD tables and the Study
    # entity in another, and warns about that; any other warning is a real inconsistency.
    assert all("AccessionNumber" in w for w in report.warnings), report.output


def test_uids_repeat_for_the_same_result_and_change_with_it(left_case):
    first = build_outputs(left_case.source, left_case.prediction, kinds=("sr", "sc", "gsps"))
    again = build_outputs(left_case.source, left_case.prediction, kinds=("sr", "sc", "gsps"))
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert [d.SeriesInstanceUID for d in first] == [d.SeriesInstanceUID for d in again]
    assert len({d.SOPInstanceUID for d in first}) == 3
    changed = dataclasses.replace(left_case.prediction, confidence=0.51)
    other = build_outputs(left_case.source, changed, kinds=("sr",))
    assert other[0].SOPInstanceUID != first[0].SOPInstanceUID


def test_source_missing_type2_attributes_still_builds(tmp_path):
    c = knee_case()
    for keyword in TYPE2_REMOVED:
        delattr(c.source, keyword)
    out = build_outputs(c.source, c.prediction, kinds=("sr", "sc", "gsps"))
    for ds in out:
        assert "AccessionNumber" in ds and not ds.AccessionNumber  # present, empty
        report = dciodvfy(save(ds, tmp_path / f"{ds.Modality}.dcm"))
        assert report.errors == [], report.output
    assert "AccessionNumber" not in c.source  # the caller's dataset is left alone


def test_source_missing_uids_is_refused_by_name(left_case):
    broken = working_copy(left_case.source)
    del broken.StudyInstanceUID
    with pytest.raises(OutputError, match="StudyInstanceUID"):
        build_outputs(broken, left_case.prediction)


def test_prediction_of_another_scheme_is_refused(left_case):
    wrong = dataclasses.replace(left_case.prediction, scheme_id="kneealign-preop@9.9")
    with pytest.raises(ValueError, match="9.9"):
        build_outputs(left_case.source, wrong, kinds=("sc",))


def test_identity_is_written(left_case):
    ident = NodeIdentity("KneeAlign", "KneeAlign DICOM node", "9.8.7", "2.25.123", "KNEE_TEST", "SER1")
    for ds in build_outputs(left_case.source, left_case.prediction, kinds=("sr", "sc", "gsps"), identity=ident):
        assert ds.Manufacturer == "KneeAlign" and ds.SoftwareVersions[0] == "KneeAlign DICOM node 9.8.7"
        mine = [eq for eq in ds.ContributingEquipmentSequence if eq.Manufacturer == "KneeAlign"]
        assert mine and mine[0].DeviceSerialNumber == "SER1"


def test_every_output_kind_is_recognised_and_others_are_not(left_case):
    for ds in build_outputs(left_case.source, left_case.prediction, kinds=KINDS):
        assert kind_of(ds) in KINDS
    with pytest.raises(ValueError, match="not a KneeAlign output"):
        kind_of(left_case.source)


def test_dicom_coords_adds_half_a_pixel():
    assert dicom_coords([[0.0, 0.0], [9.0, 4.0]]).tolist() == [[0.5, 0.5], [9.5, 4.5]]
    with pytest.raises(OutputError):
        dicom_coords([1.0, 2.0])
