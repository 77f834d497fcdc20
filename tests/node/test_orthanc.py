"""A real PACS on loopback: Orthanc pushes a study to the node through its REST API, or routes knee images
to it with the example rule in deploy/orthanc/, and afterwards holds the node's SR and SC in that same study."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.node.nodehelpers import radiograph_dataset, synthetic_knee, write
from tests.node.nodeproc import REPO, NodeProcess, node_config, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Orthanc:
    """Orthanc with its own DICOM and HTTP ports, storage in a temporary directory, one modality: the node."""

    def __init__(self, workdir: Path, node_port: int, **extra: object) -> None:
        self.binary = require_tool("/usr/sbin/Orthanc")
        self.dicom_port, self.http_port = free_port(), free_port()
        self.workdir = workdir
        config = {
            "Name": "kneealign-test", "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"), "Plugins": [],
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": True, "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port, "DicomCheckCalledAet": False,
            "DicomModalities": {"kneealign": ["KNEEALIGN", "127.0.0.1", node_port]},
            "StableAge": 1, **extra,
        }
        self.config_path = workdir / "orthanc.json"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config))
        self.process: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        log = open(self.workdir / "orthanc.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen([self.binary, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self._up() or self.process.poll() is not None, 60, "Orthanc to start")
        assert self.process.poll() is None, (self.workdir / "orthanc.log").read_text()[-3000:]
        return self

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None) -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> object:
        return self.request("GET", path)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def _pacs_peer(orthanc: Orthanc) -> list[dict]:
    return [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port,
             "send_results": True}]


def _series_modalities(orthanc: Orthanc, study: str) -> list[str]:
    return sorted(s["MainDicomTags"].get("Modality", "") for s in orthanc.get(f"/studies/{study}/series"))


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

        wait_for(lambda: len(_series_modalities(orthanc, study)) == 3, 90, "the SR and SC series in the study")
        assert _series_modalities(orthanc, study) == ["DX", "OT", "SR"]
        instances = orthanc.get(f"/studies/{study}/instances")
        sop_classes = {orthanc.get(f"/instances/{i['ID']}/simplified-tags")["SOPClassUID"] for i in instances}
        assert {"1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"} <= sop_classes
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
        wait_for(lambda: len(_series_modalities(orthanc, knee["ParentStudy"])) == 3, 90,
                 "the routed knee's SR and SC")
        assert _series_modalities(orthanc, knee["ParentStudy"]) == ["DX", "OT", "SR"]
        assert _series_modalities(orthanc, chest["ParentStudy"]) == ["DX"], "the chest was not routed"
        assert "allowed as peer 'pacs'" in node.log() and node.log().count("association requested") == 1
        assert node.stop() == 0
    finally:
        if node is not None and node.process and node.process.poll() is None:
            node.kill()
        orthanc.stop()
