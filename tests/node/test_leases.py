"""Leases on SQLite and on a real PostgreSQL server: a claim expires unless renewed, an expired job is taken back
exactly once, the worker that lost it can record nothing, and deliveries are claimed by one node at a time."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dicomnode.db import Database, utcnow
from dicomnode.db.deliveries import claim_deliveries, release_delivery_claims
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import (
    LeaseLost,
    claim_job,
    complete_job,
    expire_leases,
    fail_job,
    renew_lease,
)
from dicomnode.db.models import INSTANCE_FAILED, JOB_DEAD, JOB_QUEUED, Instance, Job, Result
from dicomnode.db.results import OutputFile, mark_skipped, save_result
from tests.node.nodehelpers import arrival


def _queued_job(db: Database, max_attempts: int = 5) -> int:
    return record_instance(db, arrival(), "instance", max_attempts).job_id


def _job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def _save(db: Database, job_id: int, holder: tuple[int, str] | None, uid: str = "2.25.10") -> tuple[int, bool]:
    job = _job(db, job_id)
    return save_result(db, job_id=job_id, instance_id=job.instance_id, source_sop_instance_uid=f"{uid}.1",
                       status="ok", summary={}, outputs=[OutputFile("sr", "1.2.3", uid, f"{uid}.9", "/s.dcm")],
                       destinations=["pacs"], holder=holder)


def test_a_claim_is_a_lease_that_renewal_extends(db: Database):
    job_id = _queued_job(db)
    t0 = utcnow()
    claimed = claim_job(db, "a:1", now=t0, lease_seconds=30)
    assert claimed is not None and claimed.id == job_id
    assert _job(db, job_id).lease_expires_at == t0 + timedelta(seconds=30)
    assert expire_leases(db, now=t0 + timedelta(seconds=29)) == []
    assert renew_lease(db, job_id, "a:1", 30, now=t0 + timedelta(seconds=20))
    assert expire_leases(db, now=t0 + timedelta(seconds=45)) == []  # renewed until t0 + 50 s
    assert not renew_lease(db, job_id, "b:1", 30), "only the holder renews"
    assert complete_job(db, job_id, "a:1")
    assert _job(db, job_id).lease_expires_at is None
    assert expire_leases(db, now=t0 + timedelta(days=1)) == [], "a finished job has no lease"


def test_an_expired_lease_is_taken_back_once_and_fences_the_old_holder(db: Database):
    job_id = _queued_job(db)
    t0 = utcnow()
    claim_job(db, "dead-node:7", now=t0, lease_seconds=10)
    expired = expire_leases(db, now=t0 + timedelta(seconds=11))
    assert [(e.job_id, e.holder, e.state) for e in expired] == [(job_id, "dead-node:7", JOB_QUEUED)]
    assert expire_leases(db, now=t0 + timedelta(seconds=12)) == [], "taken back once"
    job = _job(db, job_id)
    assert job.state == JOB_QUEUED and job.claimed_by is None and "dead-node:7" in job.last_error

    # The old holder comes back (it was only cut off): nothing it records counts any more.
    assert not renew_lease(db, job_id, "dead-node:7", 10)
    with pytest.raises(LeaseLost):
        _save(db, job_id, (job_id, "dead-node:7"))
    with pytest.raises(LeaseLost):
        mark_skipped(db, _job(db, job_id).instance_id, "not a knee", holder=(job_id, "dead-node:7"))
    assert not complete_job(db, job_id, "dead-node:7")
    assert fail_job(db, job_id, "transient: x", 1, worker_id="dead-node:7") == JOB_QUEUED

    # The node that took it over records the one result.
    taken = claim_job(db, "live-node:3", now=t0 + timedelta(seconds=12), lease_seconds=10)
    assert taken is not None and taken.id == job_id and taken.attempts == 2
    _, created = _save(db, job_id, (job_id, "live-node:3"))
    assert created and complete_job(db, job_id, "live-node:3")
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(Result)).scalar_one() == 1
        assert session.get(Instance, job.instance_id).reason is None


def test_an_expired_lease_on_the_last_attempt_buries_the_job(db: Database):
    job_id = _queued_job(db, max_attempts=1)
    t0 = utcnow()
    claim_job(db, "dead-node:7", now=t0, lease_seconds=10)
    (expired,) = expire_leases(db, now=t0 + timedelta(seconds=11))
    assert expired.state == JOB_DEAD
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.state == JOB_DEAD
        assert session.get(Instance, job.instance_id).state == INSTANCE_FAILED


def test_concurrent_expiries_take_each_job_back_once(db: Database, db_url: str):
    job_ids = [_queued_job(db) for _ in range(12)]
    for n in range(12):
        claim_job(db, f"dead-node:{n}", lease_seconds=0.01)
    time.sleep(0.05)
    found: list[list[int]] = [[] for _ in range(3)]
    start = threading.Event()

    def expire(out: list[int]) -> None:
        other = Database(db_url, create=False)
        start.wait(30)
        for _ in range(5):
            out.extend(e.job_id for e in expire_leases(other))
        other.dispose()

    threads = [threading.Thread(target=expire, args=(found[n],)) for n in range(3)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(60)
    taken = [job_id for out in found for job_id in out]
    assert sorted(taken) == sorted(job_ids), "every expired job taken back exactly once"


def _pending_deliveries(db: Database, count: int) -> None:
    for n in range(count):
        job_id = _queued_job(db)
        claim_job(db, "w:1")
        _save(db, job_id, None, uid=f"2.25.{100 + n}")
        complete_job(db, job_id)


def test_deliveries_are_claimed_by_one_node_until_the_claim_ends(db: Database):
    _pending_deliveries(db, 3)
    t0 = utcnow()
    mine = claim_deliveries(db, "node-a", now=t0, claim_seconds=60)
    assert sorted(mine) == ["pacs"] and len(mine["pacs"]) == 3
    assert claim_deliveries(db, "node-b", now=t0 + timedelta(seconds=1)) == {}, "claimed by node-a"
    # node-a died while sending: after the claim, node-b sends them.
    theirs = claim_deliveries(db, "node-b", now=t0 + timedelta(seconds=61))
    assert sorted(d.id for d in theirs["pacs"]) == sorted(d.id for d in mine["pacs"])


def test_a_node_that_starts_again_releases_its_own_delivery_claims_at_once(db: Database):
    _pending_deliveries(db, 2)
    t0 = utcnow()
    assert len(claim_deliveries(db, "node-a", now=t0)["pacs"]) == 2
    assert release_delivery_claims(db, "node-b", now=t0) == 0, "another node's claims are left alone"
    assert claim_deliveries(db, "node-a", now=t0 + timedelta(seconds=1)) == {}
    assert release_delivery_claims(db, "node-a", now=t0 + timedelta(seconds=2)) == 2
    assert len(claim_deliveries(db, "node-a", now=t0 + timedelta(seconds=2))["pacs"]) == 2
