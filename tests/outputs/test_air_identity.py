"""IHE AI Results identification: every output names the node and the weights that made it.

Contributing Equipment (purpose Processing Equipment) carries Software Versions for the node and for the weights
and a Device UID derived from the weights' checksum; the SR's algorithm identification (TID 4019) names the
weights by model card name, version and SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from dicomnode.outputs import KINDS, build_outputs
from model.weights import file_sha256, load_bundle
from tests.outputs.conftest import save
from tests.outputs.dicom_checks import DEVICE_UID_IN_CONTRIBUTING_EQUIPMENT, dciodvfy

SHA_A, SHA_B = "a" * 64, "b" * 64


def _mine(ds):
    (item,) = [eq for eq in ds.ContributingEquipmentSequence if eq.Manufacturer == "KneeAlign"]
    return item


@pytest.fixture(scope="module")
def weights_a(left_case):
    return dataclasses.replace(left_case.prediction, model_name="kneealign", model_version="1.0.0",
                               model_sha256=SHA_A)


def test_every_output_names_node_and_weights(left_case, weights_a):
    for ds in build_outputs(left_case.source, weights_a, kinds=KINDS):
        item = _mine(ds)
        assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
        node, weights = item.SoftwareVersions
        assert node.startswith("KneeAlign DICOM node ")
        assert weights == f"kneealign weights 1.0.0 sha256:{SHA_A[:16]}"
        assert list(ds.SoftwareVersions) == [node, weights]
        assert item.DeviceUID == ds.DeviceUID and item.DeviceUID.startswith("2.25.")
        assert SHA_A in item.ContributionDescription


def test_device_uid_follows_the_weights(left_case, weights_a):
    def uids(prediction):
        return {_mine(ds).DeviceUID for ds in build_outputs(left_case.source, prediction, kinds=KINDS)}

    first = uids(weights_a)
    assert len(first) == 1, "SR, SC and GSPS name the same device"
    assert uids(weights_a) == first
    assert uids(dataclasses.replace(weights_a, model_sha256=SHA_B)) != first  # retrained, same name and version
    assert uids(dataclasses.replace(weights_a, model_version="1.0.1")) != first


def test_sr_algorithm_identification_names_the_weights(left_case, weights_a):
    sr = build_outputs(left_case.source, weights_a, kinds=("sr",))[0]
    text = {}
    group = sr.ContentSequence[-1].ContentSequence[0]  # Imaging Measurements > the knee group
    for it in group.ContentSequence:
        if it.ValueType == "TEXT":
            text.setdefault(it.ConceptNameCodeSequence[0].CodeMeaning, []).append(it.TextValue)
    assert text["Algorithm Name"] == ["kneealign"] and text["Algorithm Version"] == ["1.0.0"]
    assert f"weights sha256:{SHA_A}" in text["Algorithm Parameters"]


def test_dciodvfy_warns_only_about_device_uid_in_contributing_equipment(left_case, weights_a, tmp_path):
    """The excused dciodvfy warning comes from that one attribute: without it the objects are plain standard."""
    for ds in build_outputs(left_case.source, weights_a, kinds=("sr", "sc", "gsps")):
        warnings = dciodvfy(save(ds, tmp_path / "with.dcm"), excuse_device_uid=False).warnings
        assert {w for w in warnings if "99KNEEALIGN" not in w} == set(DEVICE_UID_IN_CONTRIBUTING_EQUIPMENT)
        del _mine(ds).DeviceUID
        bare = dciodvfy(save(ds, tmp_path / "without.dcm"), excuse_device_uid=False)
        assert not set(bare.warnings) & set(DEVICE_UID_IN_CONTRIBUTING_EQUIPMENT), bare.output
        assert bare.errors == []


def test_loaded_weights_carry_their_file_checksum(shipped_weights):
    expected = hashlib.sha256(shipped_weights.read_bytes()).hexdigest()
    assert file_sha256(shipped_weights) == expected
    assert load_bundle(shipped_weights).sha256 == expected
