"""Two ``dicomnode serve`` processes on loopback, one PostgreSQL database and one spool: both take images, one
is killed with SIGKILL mid-job, the other takes its work over when the lease runs out, and every acknowledged
image ends with exactly one SR and one SC at the destination (dcmtk's storescp)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from dicomnode.db import Database
from dicomnode.db.models import AuditEvent, Instance, Job, Result
from tests.conftest import free_port
from tests.node.nodehelpers import synthetic_knee, write
from tests.node.nodeproc import NodeProcess, StoreSCP, node_config, results_by_source, storescu, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEASE_SECONDS = 4


def _node(workdir: Path, name: str, pg_url: str, spool: Path, dest_port: int, weights: Path) -> tuple[NodeProcess, int]:
    workdir.mkdir()
    port = free_port()
    config = node_config(workdir, port, dest_port, weights, node={"name": name},
                         database={"url": pg_url}, storage={"dir": str(spool), "retention_days": 7, "min_free_mb": 1},
                         processing={"lease_seconds": LEASE_SECONDS})
    return NodeProcess(config), port


def test_a_node_killed_mid_job_is_taken_over_by_the_other(tmp_path, tiny_weights, dcmtk, pg_url):
    destination = StoreSCP(tmp_path / "received", free_port()).start()
    spool = tmp_path / "shared-spool"
    node_a, port_a = _node(tmp_path / "a", "node-a", pg_url, spool, destination.port, tiny_weights)
    node_b, port_b = _node(tmp_path / "b", "node-b", pg_url, spool, destination.port, tiny_weights)
    db = Database(pg_url)  # the schema, before two nodes race to create it
    try:
        node_a.start(wait=False)
        node_b.start()
        node_a.wait_ready()
        knees = [write(synthetic_knee(300 + n, laterality="LR"[n % 2]), tmp_path / f"knee{n}.dcm") for n in range(10)]
        assert storescu(port_a, knees[:6]).returncode == 0, "acknowledged by node-a"
        assert storescu(port_b, knees[6:]).returncode == 0, "acknowledged by node-b"

        def running_on_a() -> bool:
            with db.session() as session:
                return session.scalars(select(Job).where(
                    Job.state == "running", Job.claimed_by.startswith("node-a:"))).first() is not None

        wait_for(running_on_a, 120, "node-a in the middle of a job", interval=0.02)
        node_a.kill()

        expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in knees}

        def complete() -> bool:
            grouped = results_by_source(destination.datasets())
            return set(grouped) == expected and all(v["sr"] and v["sc"] for v in grouped.values())

        wait_for(complete, 240, "an SR and an SC for every acknowledged image")
        with db.session() as session:
            wait_for(lambda: {j.state for j in session.scalars(select(Job))} == {"done"}, 60, "every job done")
            jobs = list(session.scalars(select(Job)))
            instances = list(session.scalars(select(Instance)))
            results = list(session.scalars(select(Result)))
            takeovers = list(session.scalars(select(AuditEvent).where(AuditEvent.event == "job-taken-over")))
        assert {i.state for i in instances} == {"processed"} and len(instances) == 10
        assert len(results) == 10, "one result per image"
        assert takeovers, "the takeover is in the audit trail"
        assert all("node-a:" in (t.reason or "") and t.host == "node-b" for t in takeovers), \
            [(t.host, t.reason) for t in takeovers]
        taken = [j for j in jobs if j.attempts == 2]
        assert taken and all(j.claimed_by.startswith("node-b:") for j in taken), "node-b redid node-a's job"
        grouped = results_by_source(destination.datasets())
        assert all(len(v["sr"]) == 1 and len(v["sc"]) == 1 for v in grouped.values()), \
            "exactly one SR and one SC UID per image"
        assert node_b.stop() == 0
    finally:
        node_a.kill()
        node_b.kill()
        destination.stop()
        db.dispose()
