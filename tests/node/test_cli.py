"""The ``dicomnode`` command line as a user runs it (``python -m dicomnode`` in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import yaml

from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import claim_job, fail_job
from tests.conftest import free_port
from tests.node.nodehelpers import (
    CT_IMAGE_STORAGE,
    arrival,
    radiograph_dataset,
    set_raw,
    synthetic_knee,
    write,
)
from tests.node.nodeproc import StoreSCP, child_env, node_config

REQUIRED_KEYS = {"sop_instance_uid", "laterality", "phase", "atfa_fts_deg", "atfa_fnts_deg", "confidence",
                 "status", "landmarks"}


def dicomnode(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dicomnode", *args], check=False, cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=300)


def test_process_writes_files_and_prints_one_json_line_per_image(tmp_path, tiny_weights):
    knee = synthetic_knee(11, laterality="R")
    files = [write(knee, tmp_path / "knee.dcm"),
             write(radiograph_dataset(modality="CT", sop_class_uid=CT_IMAGE_STORAGE), tmp_path / "ct.dcm")]
    run = dicomnode("process", *map(str, files), "--out", "out", "--weights", str(tiny_weights), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "skipped"]  # the right knee measured, the CT skipped
    assert lines[0]["laterality"] == "R"
    measured, skipped = lines
    assert REQUIRED_KEYS <= set(measured) and measured["sop_instance_uid"] == knee.SOPInstanceUID
    assert measured["laterality"] == "R" and len(measured["landmarks"]) in (134, 181)
    rows, cols = knee.Rows, knee.Columns
    assert all(-cols <= c <= 2 * cols and -rows <= r <= 2 * rows for c, r in measured["landmarks"])
    assert skipped["reason"].startswith("Modality is not DX or CR")
    written = {o["kind"]: pydicom.dcmread(o["path"]) for o in measured["outputs"]}
    assert set(written) == {"sr", "landmarks", "sc", "gsps"}  # --outputs defaults to every kind
    assert {str(ds.SOPInstanceUID) for ds in written.values()} == {o["sop_instance_uid"] for o in measured["outputs"]}
    assert all(ds.StudyInstanceUID == knee.StudyInstanceUID for ds in written.values())


def test_process_reports_errors_and_exits_non_zero(tmp_path, tiny_weights):
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    knee = write(synthetic_knee(12), tmp_path / "k.dcm")  # a knee, so that the model measures it whatever its weights
    run = dicomnode("process", "junk.dcm", str(knee), "--out", "out", "--outputs", "sr",
                    "--weights", str(tiny_weights), cwd=tmp_path)
    assert run.returncode == 1
    error, measured = (json.loads(line) for line in run.stdout.splitlines())
    assert error["status"] == "error" and "InvalidDicomError" in error["reason"]
    assert error["sop_instance_uid"] is None and error["failure"] == "permanent"
    assert [o["kind"] for o in measured["outputs"]] == ["sr"]
    assert sorted(p.name.rsplit(".", 2)[1] for p in (tmp_path / "out").iterdir()) == ["sr"]


def test_process_lines_carry_the_sop_instance_uid_and_a_curated_reason(tmp_path, tiny_weights):
    cr = synthetic_knee(24)
    cr.Modality, cr.SOPClassUID = "CR", "1.2.840.10008.5.1.4.1.1.1"
    cr.file_meta.MediaStorageSOPClassUID = cr.SOPClassUID
    cr.PixelSpacing = cr.ImagerPixelSpacing  # a CR with Pixel Spacing only (no Imager Pixel Spacing)
    del cr.ImagerPixelSpacing
    hostile = set_raw(synthetic_knee(25), "WindowCenter", "DS", "\\".join(["100"] * 1000))
    hostile.PatientName = "Secretname^Patient"
    files = [write(cr, tmp_path / "cr.dcm"), write(hostile, tmp_path / "hostile.dcm")]
    run = dicomnode("process", *map(str, files), "--out", "out", "--outputs", "sr",
                    "--weights", str(tiny_weights), cwd=tmp_path)
    assert run.returncode == 1
    measured, failed = (json.loads(line) for line in run.stdout.splitlines())
    assert measured["sop_instance_uid"] == cr.SOPInstanceUID and measured["status"] in ("ok", "low_confidence")
    assert measured["pixel_spacing_source"] == "PixelSpacing"
    assert failed["sop_instance_uid"] == hostile.SOPInstanceUID and failed["status"] == "error"
    assert failed["reason"] == "permanent: InvalidImage: WindowCenter has more than 64 values"
    assert "Secretname" not in run.stdout + run.stderr and "100\\100" not in run.stdout + run.stderr


def test_check_config_names_the_bad_key(tmp_path):
    config = node_config(tmp_path, 11112, 11113, None)
    data = yaml.safe_load(config.read_text())
    data["processing"]["trigger"] = "whenever"
    data["node"]["colour"] = "blue"
    config.write_text(yaml.safe_dump(data))
    run = dicomnode("check-config", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 2
    assert "processing.trigger" in run.stderr and "node.colour: unknown key" in run.stderr


def test_check_config_prints_the_config_without_the_password(tmp_path):
    config = node_config(tmp_path, 11112, 11113, None,
                         database={"url": "postgresql+psycopg://node:s3cret@db.example/kneealign"})
    run = dicomnode("check-config", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = yaml.safe_load(run.stdout)
    assert printed["database"]["url"] == "postgresql+psycopg://node:***@db.example/kneealign"
    assert printed["storage"]["dir"] == str(tmp_path / "spool") and "s3cret" not in run.stdout


def test_jobs_list_show_and_retry(tmp_path):
    config = node_config(tmp_path, 11112, 11113, None)
    db = Database(f"sqlite:///{tmp_path / 'node.sqlite'}")
    job_id = record_instance(db, arrival(sop="1.2.3.4.5.6"), "instance", 1).job_id
    claim_job(db, "host:1")
    fail_job(db, job_id, "RuntimeError: boom", retry_base_seconds=1)
    db.dispose()
    listed = dicomnode("jobs", "list", "--state", "dead", "--json", "--config", str(config), cwd=tmp_path)
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [job_id]
    shown = json.loads(dicomnode("jobs", "show", str(job_id), "--config", str(config), cwd=tmp_path).stdout)
    assert shown["state"] == "dead" and shown["instances"][0]["sop_instance_uid"] == "1.2.3.4.5.6"
    assert shown["instances"][0]["state"] == "failed" and shown["last_error"] == "RuntimeError: boom"
    retried = dicomnode("jobs", "retry", str(job_id), "--config", str(config), cwd=tmp_path)
    assert retried.returncode == 0 and "queued again" in retried.stdout
    again = dicomnode("jobs", "retry", str(job_id), "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "only dead or failed" in again.stderr
    assert dicomnode("jobs", "show", "999", "--config", str(config), cwd=tmp_path).returncode == 1
    table = dicomnode("jobs", "list", "--config", str(config), cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "KIND", "STATE"] and table[1].split()[:3] == [str(job_id),
                                                                                        "process_instance", "queued"]


@pytest.mark.integration
def test_echo_and_send_to_a_peer(tmp_path, dcmtk):
    port = free_port()
    config = str(node_config(tmp_path, free_port(), port, None))
    assert dicomnode("echo", "modality", "--config", config, cwd=tmp_path).returncode == 1, "nobody listening"
    destination = StoreSCP(tmp_path / "received", port).start()
    try:
        echo = dicomnode("echo", "modality", "--config", config, cwd=tmp_path)
        assert echo.returncode == 0 and "success" in echo.stdout
        unknown = dicomnode("echo", "nobody", "--config", config, cwd=tmp_path)
        assert unknown.returncode == 2 and "no peer named 'nobody'" in unknown.stderr
        files = [write(radiograph_dataset(), tmp_path / f"{n}.dcm") for n in range(2)]
        sent = dicomnode("send", *map(str, files), "--to", "modality", "--config", config, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert [line.split()[:2] for line in sent.stdout.splitlines()] == [["OK", "0x0000"]] * 2
        assert len(destination.files()) == 2 and destination.associations() == 2  # one echo, one send
    finally:
        destination.stop()


def test_serve_without_usable_weights_exits_with_the_reason(tmp_path):
    config = node_config(tmp_path, free_port(), free_port(), tmp_path / "missing.safetensors")
    run = dicomnode("serve", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 1
    assert "cannot load the model" in run.stderr and "weights file not found" in run.stderr
    assert "cannot start: worker-0 exited during start-up" in run.stderr
