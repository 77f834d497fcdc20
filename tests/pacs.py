"""Orthanc as a real PACS on loopback for the tests: its own DICOM and HTTP ports, storage in a temporary
directory, the node as its one modality, optionally with the DICOMweb plugin (Debian ``orthanc-dicomweb``)."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pydicom

from tests.conftest import free_port, require_tool
from tests.node.nodeproc import wait_for

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def start_server(command: list[str], log_path: Path, is_up: Callable[[], bool], name: str,
                 timeout: float = 60) -> subprocess.Popen:
    """Start a server with its output in ``log_path`` and wait until ``is_up()``; fail with the log's end if it
    exits instead."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: is_up() or process.poll() is not None, timeout, f"{name} to start")
    assert process.poll() is None, f"{name} exited at start-up:\n{log_path.read_text(errors='replace')[-3000:]}"
    return process


class Orthanc:
    """Orthanc with its own DICOM and HTTP ports, storage in a temporary directory, one modality: the node."""

    def __init__(self, workdir: Path, node_port: int, dicomweb: bool = False, **extra: object) -> None:
        self.binary = require_tool("/usr/sbin/Orthanc")
        plugins = [require_tool(DICOMWEB_PLUGIN)] if dicomweb else []
        self.dicom_port, self.http_port = free_port(), free_port()
        self.workdir = workdir
        config = {
            "Name": "kneealign-test", "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"), "Plugins": plugins,
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": True, "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port, "DicomCheckCalledAet": False,
            "DicomModalities": {"kneealign": ["KNEEALIGN", "127.0.0.1", node_port]},
            "StableAge": 1, **extra,
        }
        if dicomweb:
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                                  "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
        self.config_path = workdir / "orthanc.json"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config))
        self.process: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        self.process = start_server([self.binary, str(self.config_path)], self.workdir / "orthanc.log",
                                    self._up, "Orthanc")
        return self

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def raw(self, method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.read()

    def request(self, method: str, path: str, body: bytes | None = None) -> object:
        return json.loads(self.raw(method, path, body) or b"null")

    def get(self, path: str) -> object:
        return self.request("GET", path)

    def upload(self, ds: pydicom.Dataset) -> dict:
        """Store ``ds`` through the REST API (as a modality would, without the DICOM network)."""
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return self.request("POST", "/instances", buffer.getvalue())

    def instances_in(self, study: str) -> list[pydicom.Dataset]:
        """Every instance of an Orthanc study, as stored (pixel data included)."""
        return [pydicom.dcmread(io.BytesIO(self.raw("GET", f"/instances/{i['ID']}/file")))
                for i in self.get(f"/studies/{study}/instances")]

    def series_modalities(self, study: str) -> list[str]:
        return sorted(s["MainDicomTags"].get("Modality", "") for s in self.get(f"/studies/{study}/series"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
