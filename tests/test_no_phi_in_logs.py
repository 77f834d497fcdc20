"""No patient data in the logs: a radiograph with a distinctive patient name, ID, birth date and accession number
goes through the real node (dcmtk storescu -> Receiver -> job table -> worker loop with the real model code ->
Dispatcher -> dcmtk storescp) and through ``dicomnode process``; every log record at INFO or above (the node's,
pynetdicom's, pydicom's, highdicom's) and every Python warning is captured, and none may contain those values.

The same values do reach the result objects (checked), so their absence from the logs is not an accident of the
test data. A single-component patient name (quoted by highdicom's warning) and a malformed birth date (quoted
in highdicom's error) are covered too. The audit trail and the whole database are searched as well, and header
values crafted to forge log lines (CR/LF, escape sequences) must come out as one escaped line each.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomnode.audit import AuditTrail
from dicomnode.config import NodeConfig, load_config
from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import list_jobs
from dicomnode.dispatch import Dispatcher
from dicomnode.pipeline.analysis import analyse
from dicomnode.runtime.logsetup import configure_logging
from dicomnode.runtime.runner import JobRunner
from dicomnode.runtime.worker import load_predictor, work_loop
from dicomnode.receive import Receiver, StoredInstance
from tests.conftest import free_port
from tests.node.nodehelpers import arrival, synthetic_knee, write
from tests.node.nodeproc import (
    StoreSCP,
    child_env,
    node_config,
    storescu,
    wait_for,
)

# Values that cannot turn up in a log by chance. The name's components are checked one by one too, since a
# person name may be rendered as "Family, Given" or "Family Given".
FAMILY, GIVEN = "Qzxvbnfam", "Wkjhgfgiv"
PATIENT_NAME = f"{FAMILY}^{GIVEN}"
PATIENT_ID = "PIDQZX918273"
ACCESSION = "ACCQZX5564"
BIRTH_DATE = "19610203"
SECRETS = (FAMILY, GIVEN, PATIENT_ID, ACCESSION, BIRTH_DATE)
# Loggers whose INFO records are captured whatever level the rest of the session left them at.
LOGGERS = ("", "dicomnode", "model", "pynetdicom", "pydicom", "highdicom", "py.warnings")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.names: list[str] = []
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        with self._lock_:
            self.lines.append(text)
            self.names.append(record.name)

    def clear(self) -> None:
        with self._lock_:
            self.lines.clear()
            self.names.clear()


@pytest.fixture
def captured() -> Iterator[_Collect]:
    """Every log record at INFO or above, from every thread, and every warning (as ``py.warnings`` records)."""
    handler = _Collect()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield handler
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def leaks(texts: list[str], secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """The texts that contain any of the patient values."""
    return [text for text in texts if any(secret.lower() in text.lower() for secret in secrets)]


def knee_dx(**tags: str) -> pydicom.Dataset:
    """A synthetic knee AP DX the shipped model measures, carrying the distinctive patient values."""
    ds = synthetic_knee(31)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = (
        PATIENT_NAME, PATIENT_ID, BIRTH_DATE, ACCESSION)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def assert_carries_patient(ds: pydicom.Dataset) -> None:
    assert (str(ds.PatientName), ds.PatientID, ds.AccessionNumber) == (PATIENT_NAME, PATIENT_ID, ACCESSION)


@pytest.fixture(scope="module")
def weights(shipped_weights: Path) -> Path:
    return shipped_weights


@pytest.fixture
def config(tmp_path: Path, weights: Path) -> NodeConfig:
    return load_config(node_config(tmp_path, free_port(), free_port(), weights), env={})


@pytest.fixture(scope="module")
def predictor(weights: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_predictor(load_config(node_config(tmp_path_factory.mktemp("cfg"), 1, 2, weights), env={}))


def run_worker_until(config: NodeConfig, db: Database, predictor, done) -> None:
    """The worker's real claim-run-record loop in a thread, until ``done()`` is true."""
    stop = threading.Event()
    runner = JobRunner(config, db, predictor)
    thread = threading.Thread(target=work_loop, args=(runner, db, "test:1", 1.0, stop), daemon=True)
    thread.start()
    try:
        wait_for(done, 60, "the worker to finish the job")
    finally:
        stop.set()
        thread.join(30)


def test_receive_process_and_dispatch_log_no_patient_data(tmp_path, config, predictor, dcmtk, captured):
    db = Database(config.database.url)

    def on_stored(stored: StoredInstance) -> None:
        record_instance(db, stored, "instance", config.processing.max_attempts)

    peer = config.peers[0]
    destination = StoreSCP(tmp_path / "received", peer.port, peer.ae_title).start()
    audit = AuditTrail.for_config(config, db)
    receiver = Receiver(config, on_stored, audit)
    receiver.start()
    try:
        knee = write(knee_dx(), tmp_path / "knee.dcm")
        not_an_image = knee_dx()
        del not_an_image.PixelData
        refused = write(not_an_image, tmp_path / "no-pixels.dcm")
        storescu(receiver.port, [knee, refused])
        wait_for(lambda: list_jobs(db), 30, "the knee to be queued")
        run_worker_until(config, db, predictor, lambda: all(j.state == "done" for j in list_jobs(db)))
        report = Dispatcher(config, db, audit).run_once()
        assert report.total_delivered == 2, report
        wait_for(lambda: len(destination.files()) == 2, 30, "the SR and SC at the destination")
    finally:
        receiver.stop(grace_seconds=1)
        destination.stop()
        audit.close()
        db.dispose()

    # The audit trail recorded the session (UIDs only), and no table of the database holds patient data.
    dump = "\n".join(sqlite3.connect(config.database.url.removeprefix("sqlite:///")).iterdump())
    for event in ("association-accepted", "instance-received", "instance-refused", "result-sent"):
        assert f"'{event}'" in dump, f"no {event} in the audit trail"
    assert leaks(dump.splitlines()) == []

    stored = list(Path(config.storage.dir, "instances").rglob("*.dcm"))
    assert len(stored) == 1, "the knee is stored, the image without pixel data refused"
    for ds in [pydicom.dcmread(stored[0]), *destination.datasets()]:
        assert_carries_patient(ds)  # the values went all the way through ...
    assert any("processed" in line for line in captured.lines), captured.lines  # ... the node logged ...
    assert any("refused with 0xC002" in line for line in captured.lines), captured.lines
    assert any(name.startswith("pynetdicom") for name in captured.names), "pynetdicom's INFO records captured"
    assert leaks(captured.lines) == []  # ... and not one record says whose image it was


def test_cli_process_prints_no_patient_data(tmp_path, config):
    knee = write(knee_dx(), tmp_path / "knee.dcm")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-W", "always", "-m", "dicomnode", "process", str(knee), "--out", str(out),
         "--config", str(config.source), "--device", "cpu"],
        check=False, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout.splitlines()[-1])
    assert line["status"] in ("ok", "low_confidence") and len(line["outputs"]) == 4  # sr, landmarks, sc, gsps
    for output in line["outputs"]:
        assert_carries_patient(pydicom.dcmread(output["path"], stop_before_pixels=True))
    assert leaks(run.stdout.splitlines() + run.stderr.splitlines()) == []


def test_a_single_component_patient_name_stays_out_of_warnings(predictor, captured):
    analysis = analyse(knee_dx(PatientName=f"{FAMILY} {GIVEN}"), predictor, ["sr", "sc"])
    assert len(analysis.outputs) == 2
    assert leaks(captured.lines) == []


def test_a_malformed_birth_date_stays_out_of_the_worker_log(tmp_path, config, predictor, captured):
    db = Database(config.database.url)
    try:
        ds = knee_dx(PatientBirthDate="1961-02-03")
        path = write(ds, Path(config.storage.dir) / "instances" / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm")
        record_instance(db, arrival(study=ds.StudyInstanceUID, sop=ds.SOPInstanceUID, path=str(path),
                                    peer_name="modality"), "instance", 1)
        captured.clear()  # pydicom's own warning about the value the test just wrote is not the node's doing
        run_worker_until(config, db, predictor,
                         lambda: all(j.state in ("done", "dead") for j in list_jobs(db)))
        states = [j.state for j in list_jobs(db)]
    finally:
        db.dispose()
    assert states == ["done"], "a malformed birth date must not cost the image its result"
    assert leaks(captured.lines, SECRETS + ("1961-02-03",)) == []


FORGED = "2026-01-01 00:00:00,000 CRITICAL forged"


def test_log_lines_cannot_be_forged_and_invalid_values_stay_out(tmp_path, config, predictor):
    """Header values built to forge log lines, and a patient name pydicom finds invalid (its warning quotes
    the value), through the receiver and the worker with the node's own log set-up."""
    stream = io.StringIO()
    configure_logging("INFO")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().addHandler(handler)
    db = Database(config.database.url)
    receiver = Receiver(config, lambda stored: record_instance(db, stored, "instance", 1))
    receiver.start()
    try:
        forged_view = knee_dx(ViewPosition=f"AP\r\n{FORGED}", PatientName=f"{PATIENT_NAME}\x1b[2J=" + "X" * 70)
        forged_uid = knee_dx()
        forged_uid.SeriesInstanceUID = f"1.2.3\n{FORGED}"
        storescu(receiver.port, [write(forged_view, tmp_path / "view.dcm"), write(forged_uid, tmp_path / "uid.dcm")])
        wait_for(lambda: list_jobs(db), 30, "the knee to be queued")
        run_worker_until(config, db, predictor, lambda: all(j.state in ("done", "dead") for j in list_jobs(db)))
    finally:
        receiver.stop(grace_seconds=1)
        db.dispose()
        logging.getLogger().removeHandler(handler)
        configure_logging("WARNING")
    lines = stream.getvalue().splitlines()
    assert any("refused with 0xC001" in line for line in lines), lines
    record_start = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
    assert all(record_start.match(line) or line.startswith("    | ") for line in lines), "a forged line"
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert "\x1b" not in stream.getvalue()
    assert leaks(lines) == []


def database_text(url: str) -> list[str]:
    """Every text value stored in the node's database (all tables, all columns), as strings."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    values: list[str] = []
    try:
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    values += [str(value) for value in row if value is not None]
    finally:
        engine.dispose()
    return values


# Hostile images whose odd value is itself patient data: neither the failure nor the skip reason may quote it.
HOSTILE_WITH_PATIENT_DATA = {
    "multivalued-name": ("PatientName", "PN", f"{PATIENT_NAME}\\Other^Name"),
    "charset-is-an-id": ("SpecificCharacterSet", "CS", PATIENT_ID),
    "window-is-an-id": ("WindowCenter", "DS", PATIENT_ID),
    "body-part-is-an-id": ("BodyPartExamined", "CS", PATIENT_ID),
    "view-is-a-name": ("ViewPosition", "CS", FAMILY),
    "spacing-is-a-date": ("PixelSpacing", "DS", f"{BIRTH_DATE}\\{BIRTH_DATE}"),
}


@pytest.fixture
def node_levels(captured):
    """``captured``, with the library log levels the node itself sets (dicomnode.runtime.logsetup): pydicom
    quotes invalid values at WARNING, which the node keeps out of its logs by its levels."""
    from dicomnode.runtime.logsetup import library_levels

    saved = {name: logging.getLogger(name).level for name in library_levels()}
    for name, level in library_levels().items():
        logging.getLogger(name).setLevel(level)
    try:
        yield captured
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _fresh_uids(ds: pydicom.Dataset) -> pydicom.Dataset:
    from pydicom.uid import generate_uid

    ds.StudyInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def test_database_reasons_and_jobs_show_hold_no_patient_data(tmp_path, config, predictor, node_levels):
    from dicomnode.db.report import describe_job
    from tests.node.nodehelpers import set_raw

    captured = node_levels
    db = Database(config.database.url)
    try:
        for keyword, vr, value in HOSTILE_WITH_PATIENT_DATA.values():
            ds = set_raw(_fresh_uids(knee_dx()), keyword, vr, value)
            path = write(ds, Path(config.storage.dir) / "instances" / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm")
            record_instance(db, arrival(study=ds.StudyInstanceUID, sop=ds.SOPInstanceUID, path=str(path),
                                        peer_name="modality"), "instance", 5)
        plain = _fresh_uids(knee_dx())
        path = write(plain, Path(config.storage.dir) / "instances" / plain.StudyInstanceUID / "plain.dcm")
        record_instance(db, arrival(study=plain.StudyInstanceUID, sop=plain.SOPInstanceUID, path=str(path),
                                    peer_name="modality"), "instance", 5)
        captured.clear()
        run_worker_until(config, db, predictor, lambda: all(j.state in ("done", "dead") for j in list_jobs(db)))
        jobs = list_jobs(db)
        shown = json.dumps([describe_job(db, job.id) for job in jobs])
    finally:
        db.dispose()
    states = sorted(job.state for job in jobs)
    assert states.count("dead") == 4 and states.count("done") == 3, states  # 4 failed once, 2 skipped, 1 result
    assert all(job.attempts == 1 for job in jobs), "never retried"
    stored = database_text(config.database.url)
    assert any("InvalidImage" in value for value in stored) and any("not KNEE" in value for value in stored)
    assert leaks(stored) == [] and leaks([shown]) == [] and leaks(captured.lines) == []
