"""A real PACS on loopback: Orthanc pushes a study to the node through its REST API, or routes knee images
to it with the example rule in deploy/orthanc/, and afterwards holds the node's SR and SC in that same study."""

from __future__ import annotations

import json

import pytest
from pydicom.uid import JPEG2000Lossless

from model.weights import file_sha256
from tests.conftest import free_port
from tests.node.nodehelpers import radiograph_dataset, synthetic_knee, write
from tests.node.nodeproc import REPO, NodeProcess, node_config, wait_for
from tests.pacs import Orthanc

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pacs_peer(orthanc: Orthanc) -> list[dict]:
    return [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port,
             "send_results": True}]


def test_orthanc_study_gets_the_sr_and_sc_back(tmp_path, tiny_weights):
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", node_port).start()
    node = None
    try:
        node = NodeProcess(node_config(tmp_path, node_port, orthanc.dicom_port, tiny_weights,
                                       peers=_pacs_peer(orthanc))).start()
        knee = write(synthetic_knee(7), tmp_path / "knee.dcm")
        study = orthanc.request("POST", "/instances", knee.read_bytes())["ParentStudy"]
        job = orthanc.request("POST", "/modalities/kneealign/store",
                              json.dumps({"Resources": [study], "Synchronous": True}).encode())
        assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == 1, job

        wait_for(lambda: len(orthanc.series_modalities(study)) == 3, 90, "the SR and SC series in the study")
        assert orthanc.series_modalities(study) == ["DX", "OT", "SR"]
        stored = {str(ds.SOPClassUID): ds for ds in orthanc.instances_in(study)}
        assert {"1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"} <= set(stored)
        sc = stored["1.2.840.10008.5.1.4.1.1.7"]
        assert sc.file_meta.TransferSyntaxUID == JPEG2000Lossless  # Orthanc took the compressed SC as sent
        assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)
        checksum = file_sha256(tiny_weights)  # the weights the node ran, named in every result (IHE AIR)
        for ds in (sc, stored["1.2.840.10008.5.1.4.1.1.88.33"]):
            (mine,) = [eq for eq in ds.ContributingEquipmentSequence if eq.Manufacturer == "KneeAlign"]
            assert mine.SoftwareVersions[1].endswith(f"sha256:{checksum[:16]}")
            assert checksum in mine.ContributionDescription
        assert len(orthanc.get("/studies")) == 1, "the results joined the existing study"
        assert node.stop() == 0
    finally:
        if node is not None and node.process and node.process.poll() is None:
            node.kill()
        orthanc.stop()


def test_the_example_orthanc_rule_routes_knees_and_only_knees(tmp_path, tiny_weights):
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", node_port,
                      LuaScripts=[str(REPO / "deploy" / "orthanc" / "route-knees.lua")]).start()
    node = None
    try:
        node = NodeProcess(node_config(tmp_path, node_port, orthanc.dicom_port, tiny_weights,
                                       peers=_pacs_peer(orthanc))).start()
        knee = orthanc.request("POST", "/instances", write(synthetic_knee(9), tmp_path / "k.dcm").read_bytes())
        chest = orthanc.request("POST", "/instances", write(radiograph_dataset(body_part="CHEST"),
                                                            tmp_path / "c.dcm").read_bytes())
        wait_for(lambda: len(orthanc.series_modalities(knee["ParentStudy"])) == 3, 90,
                 "the routed knee's SR and SC")
        assert orthanc.series_modalities(knee["ParentStudy"]) == ["DX", "OT", "SR"]
        assert orthanc.series_modalities(chest["ParentStudy"]) == ["DX"], "the chest was not routed"
        assert "as peer 'pacs'" in node.log() and node.log().count("association accepted") == 1
        assert node.stop() == 0
    finally:
        if node is not None and node.process and node.process.poll() is None:
            node.kill()
        orthanc.stop()
