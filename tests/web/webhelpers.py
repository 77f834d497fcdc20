"""Helpers for the web tests: a stand-in for the running service around a real configuration and database,
the real HTTP server in this process, plain HTTP requests without redirects, and a database with a job of
each kind the page shows."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import func, select

from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.deliveries import AttemptOutcome, RetryPolicy, record_attempts
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import claim_job, complete_job, fail_job
from dicomnode.db.models import Delivery
from dicomnode.db.results import OutputFile, save_result
from dicomnode.web.control import ProcessState
from tests.node.nodehelpers import arrival, radiograph_dataset, write

HOSTILE_ERROR = "<script>document.title='pwned-job'</script>"
HOSTILE_STATUS = "status 0xA700: <img src=x onerror=\"document.title='pwned-delivery'\">"


@dataclass
class FakeNode:
    """What ``dicomnode.service.Service`` gives the web side, with its processes as the test says."""

    config: NodeConfig
    db: Database | None
    host: str = "testhost"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    processes: list[ProcessState] = field(default_factory=lambda: [
        ProcessState("worker-0", 101, True, True), ProcessState("receiver", 102, True, True)])
    starting: bool = False
    stopping: bool = False
    woken: int = 0
    dispatched: int = 0

    def process_states(self) -> list[ProcessState]:
        return self.processes

    def wake_workers(self) -> None:
        self.woken += 1

    def dispatch_soon(self) -> None:
        self.dispatched += 1


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         form: dict[str, str] | None = None) -> Reply:
    """One request to 127.0.0.1:``port``, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urlencode(form).encode() if form is not None else None
    all_headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
    all_headers.update(headers or {})
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass(frozen=True)
class Populated:
    done_uid: str  # an instance processed, its result delivered
    dead_job_id: int  # a job dead with a hostile error text
    dead_delivery_id: int  # a delivery dead with a hostile status text


def populate(db: Database, workdir: Path, patient_name: str = "Doe^Jane", patient_id: str = "PID42") -> Populated:
    """Three jobs through the real queue functions: done and delivered, dead, done with a dead delivery."""
    def received(name: str):
        ds = radiograph_dataset()
        ds.PatientName, ds.PatientID = patient_name, patient_id
        path = write(ds, workdir / "instances" / f"{name}.dcm")
        return arrival(sop=str(ds.SOPInstanceUID), path=str(path), peer_name="modality")

    def processed(source, delivery_ok: bool, status: str) -> int:
        record_instance(db, source, "instance", 1)
        job = claim_job(db, "host:1")
        out = radiograph_dataset()
        result_file = OutputFile("sc", out.SOPClassUID, out.SOPInstanceUID, out.SeriesInstanceUID,
                                 str(write(out, workdir / "outputs" / f"{out.SOPInstanceUID}.dcm")))
        save_result(db, job_id=job.id, instance_id=job.instance_id, source_sop_instance_uid=source.sop_instance_uid,
                    status="ok", summary={"atfa_fnts_deg": 5.25, "atfa_fts_deg": 4.75, "laterality": "L"},
                    outputs=[result_file], destinations=["modality"])
        complete_job(db, job.id)
        with db.session() as session:
            delivery_id = session.execute(select(func.max(Delivery.id))).scalar_one()
        record_attempts(db, [AttemptOutcome(delivery_id, delivery_ok, status)], RetryPolicy(1, 1, 1))
        return delivery_id

    done = received("done")
    processed(done, True, "0x0000 success")
    failing = received("failing")
    dead_job_id = record_instance(db, failing, "instance", 1).job_id
    claim_job(db, "host:1")
    fail_job(db, dead_job_id, HOSTILE_ERROR, retry_base_seconds=1)
    dead_delivery_id = processed(received("undelivered"), False, HOSTILE_STATUS)
    return Populated(done.sop_instance_uid, dead_job_id, dead_delivery_id)
