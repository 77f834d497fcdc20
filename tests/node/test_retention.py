"""Retention clean-up on SQLite and PostgreSQL: finished work older than retention_days goes, with its
files; nothing undelivered or unfinished is ever removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import select

from dicomnode.db import Database, utcnow
from dicomnode.db.deliveries import (
    AttemptOutcome,
    RetryPolicy,
    due_deliveries,
    record_attempts,
)
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import claim_job, complete_job
from dicomnode.db.models import Delivery, Instance, Job, Study
from dicomnode.db.results import OutputFile, mark_skipped, save_result
from dicomnode.runtime.retention import purge_expired
from tests.node.nodehelpers import arrival


def _file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return str(path)


def _instance(db: Database, spool: Path, name: str, received_days_ago: float, outcome: str) -> str:
    """An instance received ``received_days_ago`` and taken to ``outcome``: delivered, undelivered,
    skipped, dead_delivery or queued."""
    when = utcnow() - timedelta(days=received_days_ago)
    source = _file(spool / "instances" / name / "source.dcm")
    record_instance(db, arrival(study=generate_uid(), sop=f"1.9.{name}", path=source), "instance", 3, now=when)
    if outcome == "queued":
        return source
    job = claim_job(db, "host:1")
    if outcome == "skipped":
        mark_skipped(db, job.instance_id, "not a knee")
    else:
        output = OutputFile("sr", "1.2.840.10008.5.1.4.1.1.88.33", generate_uid(), generate_uid(),
                            _file(spool / "outputs" / name / "sr.dcm"))
        save_result(db, job_id=job.id, instance_id=job.instance_id, source_sop_instance_uid=f"1.9.{name}",
                    status="ok", summary={}, outputs=[output], destinations=["pacs"])
        if outcome != "undelivered":
            (delivery,) = [d for d in due_deliveries(db)["pacs"] if d.sop_instance_uid == output.sop_instance_uid]
            record_attempts(db, [AttemptOutcome(delivery.id, outcome == "delivered", "test")],
                            RetryPolicy(1, 1, 1))
    complete_job(db, job.id, "host:1")
    return source


def test_only_finished_old_work_is_removed(db: Database, tmp_path: Path):
    spool = tmp_path / "spool"
    kept = {name: _instance(db, spool, name, days, outcome) for name, days, outcome in [
        ("recent", 1, "delivered"), ("waiting", 30, "undelivered"), ("dead", 30, "dead_delivery")]}
    gone = {name: _instance(db, spool, name, 30, outcome) for name, outcome in [
        ("old", "delivered"), ("skipped", "skipped")]}
    kept["queued"] = _instance(db, spool, "queued", 30, "queued")  # last: the claims above must not take it
    report = purge_expired(db, spool, retention_days=7)
    assert (report.instances, report.files) == (2, 3)
    with db.session() as session:
        remaining = {i.sop_instance_uid.removeprefix("1.9.") for i in session.scalars(select(Instance))}
        assert remaining == set(kept)
        assert len(session.scalars(select(Delivery)).all()) == 3, "deliveries of removed results went too"
        assert session.scalars(select(Job)).all(), "jobs of kept instances stay"
        assert len(session.scalars(select(Study)).all()) == 4, "the studies left empty are removed"
    assert all(Path(p).exists() for p in kept.values())
    assert not any(Path(p).exists() for p in gone.values())
    assert not (spool / "outputs" / "old").exists(), "emptied directories are removed"
    assert (spool / "outputs" / "waiting" / "sr.dcm").exists(), "an undelivered result is never removed"
    assert purge_expired(db, spool, retention_days=7).instances == 0
