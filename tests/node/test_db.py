"""The job database on SQLite and on a real PostgreSQL server: atomic claims, backoff, dead letters,
recovery of running jobs, de-duplication, idempotent results and delivery retries."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dicomnode.db import Database, utcnow
from dicomnode.db.deliveries import (
    AttemptOutcome,
    RetryPolicy,
    due_deliveries,
    record_attempts,
    retry_dead_deliveries,
)
from dicomnode.db.intake import queue_quiet_studies, record_instance
from dicomnode.db.jobs import (
    claim_job,
    complete_job,
    defer_job,
    fail_job,
    promote_due_retries,
    requeue_running,
    retry_dead_jobs,
    retry_job,
)
from dicomnode.db.models import (
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    Output,
    Result,
    Study,
)
from dicomnode.db.results import OutputFile, mark_skipped, save_result
from tests.node.nodehelpers import arrival


def _queue(db: Database, count: int, max_attempts: int = 5) -> list[int]:
    return [record_instance(db, arrival(), "instance", max_attempts).job_id for _ in range(count)]


def _count(db: Database, model, *where) -> int:
    with db.session() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def _drain(url: str, worker: str, out: list[int], start: threading.Event | None = None) -> None:
    database = Database(url, create=False)
    claim_job(database, "warm-up", now=utcnow() - timedelta(days=1))  # connect before the race starts
    if start is not None:
        start.wait(60)
    while (job := claim_job(database, worker)) is not None:
        out.append(job.id)
        time.sleep(0.002)  # let the other claimants interleave
    database.dispose()


def test_claims_are_exclusive_across_threads(db: Database, db_url: str):
    job_ids = _queue(db, 40)
    claimed: list[list[int]] = [[] for _ in range(4)]
    start = threading.Event()
    threads = [threading.Thread(target=_drain, args=(db_url, f"host:{n}", claimed[n], start)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    start.set()
    for thread in threads:
        thread.join(60)
    flat = [job_id for part in claimed for job_id in part]
    assert sorted(flat) == sorted(job_ids), "every job claimed exactly once"
    assert sum(1 for part in claimed if part) >= 2, "the claimants raced"
    assert _count(db, Job, Job.state == "running", Job.attempts == 1) == 40


def _claim_in_process(url: str, worker: str, ready, start, queue) -> None:
    claimed: list[int] = []
    ready.release()
    _drain(url, worker, claimed, start)
    queue.put((worker, claimed))


def test_claims_are_exclusive_across_processes(db: Database, db_url: str):
    job_ids = _queue(db, 30)
    context = multiprocessing.get_context("spawn")
    results, ready, start = context.Queue(), context.Semaphore(0), context.Event()
    workers = [context.Process(target=_claim_in_process, args=(db_url, f"host:{n}", ready, start, results))
               for n in range(2)]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert ready.acquire(timeout=60)
    time.sleep(0.5)
    start.set()
    parts = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(30)
    assert sorted(parts["host:0"] + parts["host:1"]) == sorted(job_ids)
    assert not set(parts["host:0"]) & set(parts["host:1"])
    assert parts["host:0"] and parts["host:1"], "both processes took part"
    with db.session() as session:
        owners = dict(session.execute(select(Job.id, Job.claimed_by)).all())
    for name, part in parts.items():
        assert all(owners[job_id] == name for job_id in part)


def test_nothing_is_claimed_before_its_time(db: Database):
    _queue(db, 1)
    assert claim_job(db, "host:1", now=utcnow() - timedelta(seconds=60)) is None
    assert claim_job(db, "host:1") is not None
    assert claim_job(db, "host:1") is None


def test_backoff_then_dead_letter(db: Database):
    (job_id,) = _queue(db, 1, max_attempts=3)
    start = utcnow()
    for attempt, delay in ((1, 10), (2, 20)):
        job = claim_job(db, "host:1", now=start)
        assert (job.id, job.attempts) == (job_id, attempt)
        assert fail_job(db, job_id, f"boom {attempt}", retry_base_seconds=10, now=start) == "failed"
        assert _job(db, job_id).next_attempt_at == start + timedelta(seconds=delay)
        assert promote_due_retries(db, now=start + timedelta(seconds=delay - 1)) == 0
        assert claim_job(db, "host:1", now=start + timedelta(seconds=delay)) is None  # failed, not queued
        assert promote_due_retries(db, now=start + timedelta(seconds=delay)) == 1
        start += timedelta(seconds=delay)
    claim_job(db, "host:1", now=start)
    assert fail_job(db, job_id, "boom 3", retry_base_seconds=10, now=start) == "dead"
    job = _job(db, job_id)
    assert (job.state, job.attempts, job.last_error) == ("dead", 3, "boom 3")
    with db.session() as session:
        instance = session.get(Instance, job.instance_id)
    assert (instance.state, instance.reason) == ("failed", "boom 3")
    assert promote_due_retries(db, now=start + timedelta(days=1)) == 0


def test_manual_retry_revives_dead_jobs_only(db: Database):
    (job_id,) = _queue(db, 1, max_attempts=1)
    claim_job(db, "host:1")
    assert fail_job(db, job_id, "boom", retry_base_seconds=1) == "dead"
    retry_job(db, job_id)
    job = _job(db, job_id)
    assert (job.state, job.attempts) == ("queued", 0)
    with db.session() as session:
        assert session.get(Instance, job.instance_id).state == "queued"
    claimed = claim_job(db, "host:1")
    assert claimed.id == job_id
    complete_job(db, job_id, "host:1")
    with pytest.raises(ValueError, match="only dead or failed"):
        retry_job(db, job_id)
    with pytest.raises(LookupError):
        retry_job(db, 9999)


def test_running_jobs_are_recovered_at_start_up(db: Database):
    mine, other, worn = _queue(db, 3)
    claim_job(db, "alpha:10")
    claim_job(db, "beta:20")
    with db.transaction() as session:
        session.get(Job, worn).max_attempts = 1
    claim_job(db, "alpha:11")
    assert requeue_running(db, claimed_by_prefix="alpha:") == 2
    assert (_job(db, mine).state, _job(db, mine).claimed_by) == ("queued", None)
    assert _job(db, other).state == "running", "another host's job is left alone"
    assert _job(db, worn).state == "dead", "the claim that crashed was its last attempt"
    again = claim_job(db, "alpha:12")
    assert (again.id, again.attempts) == (mine, 2)
    assert not complete_job(db, other, "alpha:12"), "only the claimant completes a job"
    assert complete_job(db, mine, "alpha:12")


def test_resent_instance_is_recorded_once_and_not_reprocessed(db: Database):
    first = arrival(sop="1.2.3.4.5")
    outcome = record_instance(db, first, "instance", 5)
    again = record_instance(db, first, "instance", 5)
    assert not outcome.duplicate and again.duplicate
    assert again.job_id is None and again.instance_id == outcome.instance_id
    assert _count(db, Instance) == 1 and _count(db, Job) == 1
    job = claim_job(db, "host:1")
    save_result(db, job_id=job.id, instance_id=job.instance_id, source_sop_instance_uid="1.2.3.4.5",
                status="ok", summary={}, outputs=[], destinations=[])
    complete_job(db, job.id, "host:1")
    third = record_instance(db, first, "instance", 5)
    assert (third.duplicate, third.job_id, third.state) == (True, None, "processed")
    with db.session() as session:
        assert session.get(Instance, outcome.instance_id).receive_count == 3
    assert _count(db, Job) == 1 and _count(db, Result) == 1


def test_resent_failed_instance_is_queued_again(db: Database):
    first = arrival()
    job_id = record_instance(db, first, "instance", 1).job_id
    claim_job(db, "host:1")
    fail_job(db, job_id, "boom", retry_base_seconds=1)
    outcome = record_instance(db, first, "instance", 1)
    assert outcome.state == "queued" and outcome.job_id not in (None, job_id)


def test_concurrent_arrivals_of_one_instance_make_one_row(db: Database, db_url: str):
    same = arrival(sop="1.2.3.99")
    outcomes = []

    def send() -> None:
        database = Database(db_url, create=False)
        outcomes.append(record_instance(database, same, "instance", 5))
        database.dispose()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 4
    assert sum(not o.duplicate for o in outcomes) == 1
    assert _count(db, Instance) == 1 and _count(db, Job) == 1 and _count(db, Study) == 1


def test_result_is_written_once(db: Database):
    job = claim_job(db, "host:1") if _queue(db, 1) else None
    outputs = [OutputFile("sr", "1.2.840.10008.5.1.4.1.1.88.33", "2.25.1", "2.25.2", "/spool/sr.dcm"),
               OutputFile("sc", "1.2.840.10008.5.1.4.1.1.7", "2.25.3", "2.25.4", "/spool/sc.dcm")]
    kwargs = {"job_id": job.id, "instance_id": job.instance_id, "source_sop_instance_uid": "1.9.9",
              "status": "ok", "summary": {"atfa_fts_deg": 3.5}, "outputs": outputs,
              "destinations": ["pacs", "archive"]}
    first_id, created = save_result(db, **kwargs)
    again_id, created_again = save_result(db, **kwargs)
    assert created and not created_again and first_id == again_id
    assert _count(db, Result) == 1 and _count(db, Output) == 2 and _count(db, Delivery) == 4
    with db.session() as session:
        assert session.get(Instance, job.instance_id).state == "processed"
        assert session.get(Result, first_id).summary == {"atfa_fts_deg": 3.5}


def test_skipped_instance_keeps_its_reason(db: Database):
    job = claim_job(db, "host:1") if _queue(db, 1) else None
    mark_skipped(db, job.instance_id, "Modality is not DX or CR")
    with db.session() as session:
        instance = session.get(Instance, job.instance_id)
    assert (instance.state, instance.reason) == ("skipped", "Modality is not DX or CR")


def test_study_trigger_waits_for_quiet_period(db: Database):
    t0 = utcnow()
    for n in range(2):
        outcome = record_instance(db, arrival(study="1.2.7"), "study", 5, now=t0 + timedelta(seconds=n))
        assert (outcome.job_id, outcome.state) == (None, "received")
    assert queue_quiet_studies(db, 5, 5, now=t0 + timedelta(seconds=5.9)) == []
    (job_id,) = queue_quiet_studies(db, 5, 5, now=t0 + timedelta(seconds=6))
    assert queue_quiet_studies(db, 5, 5, now=t0 + timedelta(seconds=60)) == []
    assert _count(db, Instance, Instance.state == "queued") == 2
    job = claim_job(db, "host:1", now=t0 + timedelta(seconds=7))
    assert (job.id, job.kind, job.instance_id) == (job_id, "process_study", None)
    late = record_instance(db, arrival(study="1.2.7"), "study", 5, now=t0 + timedelta(seconds=30))
    assert late.state == "received"
    assert len(queue_quiet_studies(db, 5, 5, now=t0 + timedelta(seconds=35))) == 1


def test_study_state_survives_a_restart(db_url: str):
    t0 = utcnow()
    first = Database(db_url)
    record_instance(first, arrival(study="1.2.8"), "study", 5, now=t0)
    first.dispose()
    second = Database(db_url)
    assert len(queue_quiet_studies(second, 5, 5, now=t0 + timedelta(seconds=5))) == 1
    second.dispose()


def _result_for(db: Database, destinations: list[str]) -> None:
    """One processed instance whose SR is to be delivered to each of ``destinations``."""
    job = claim_job(db, "host:1") if _queue(db, 1) else None
    save_result(db, job_id=job.id, instance_id=job.instance_id, source_sop_instance_uid="1.9.8", status="ok",
                summary={}, outputs=[OutputFile("sr", "1.2.3", "2.25.7", "2.25.8", "/s.dcm")],
                destinations=destinations)


def test_delivery_backoff_and_dead_letter(db: Database):
    _result_for(db, ["pacs", "down"])
    policy = RetryPolicy(max_attempts=3, base_seconds=15, max_seconds=20)
    t0 = utcnow()
    due = due_deliveries(db, now=t0)
    assert sorted(due) == ["down", "pacs"]
    pacs, down = due["pacs"][0], due["down"][0]
    states = record_attempts(db, [AttemptOutcome(pacs.id, True, "0x0000"),
                                  AttemptOutcome(down.id, False, "connection refused")], policy, now=t0)
    assert states == {pacs.id: "delivered", down.id: "pending"}
    assert due_deliveries(db, now=t0 + timedelta(seconds=14.9)) == {}
    assert [d.id for d in due_deliveries(db, now=t0 + timedelta(seconds=15))["down"]] == [down.id]
    record_attempts(db, [AttemptOutcome(down.id, False, "refused")], policy, now=t0 + timedelta(seconds=15))
    with db.session() as session:
        # second delay would be 30 s, capped at 20 s
        assert session.get(Delivery, down.id).next_attempt_at == t0 + timedelta(seconds=35)
    states = record_attempts(db, [AttemptOutcome(down.id, False, "refused")], policy,
                             now=t0 + timedelta(seconds=35))
    assert states == {down.id: "dead"}
    assert due_deliveries(db, now=t0 + timedelta(days=1)) == {}
    assert _count(db, DeliveryAttempt) == 4
    assert _count(db, DeliveryAttempt, DeliveryAttempt.ok.is_(True)) == 1


def test_one_dead_worker_is_requeued_without_touching_its_namesakes(db: Database):
    first, second = _queue(db, 2)
    claim_job(db, "alpha:12")
    claim_job(db, "alpha:123")
    assert requeue_running(db, claimed_by="alpha:12") == 1
    assert (_job(db, first).state, _job(db, second).state) == ("queued", "running")


def test_a_permanent_failure_is_dead_at_once_and_a_limit_is_retried_once(db: Database):
    now = utcnow() + timedelta(minutes=1)  # every job below is queued before this

    def attempt(job_id: int, error: str, retry: str, hours: int) -> str:
        promote_due_retries(db, now=now + timedelta(hours=hours))
        assert claim_job(db, "host:1", now=now + timedelta(hours=hours)).id == job_id
        return fail_job(db, job_id, error, 1, now=now + timedelta(hours=hours), retry=retry)

    (permanent,) = _queue(db, 1, max_attempts=5)
    assert attempt(permanent, "permanent: InvalidImage: Rows is 0", "never", 0) == "dead"
    assert _job(db, permanent).attempts == 1
    (limited,) = _queue(db, 1, max_attempts=5)
    assert attempt(limited, "limit: TimeLimitExceeded: slow", "once", 1) == "failed"
    assert attempt(limited, "limit: TimeLimitExceeded: slow", "once", 2) == "dead"
    # A limit after a failure of another kind is still retried once.
    (mixed,) = _queue(db, 1, max_attempts=5)
    assert attempt(mixed, "transient: OperationalError: database locked", "backoff", 3) == "failed"
    assert attempt(mixed, "limit: SandboxCrashed: SIGSEGV", "once", 4) == "failed"
    with pytest.raises(ValueError, match="retry must be one of"):
        fail_job(db, mixed, "x", 1, retry="sometimes")


def test_a_deferred_job_goes_back_to_the_queue_without_using_an_attempt(db: Database):
    (job_id,) = _queue(db, 1, max_attempts=1)
    now = utcnow()
    for _ in range(3):  # however often the disk is full, the job is never buried for it
        job = claim_job(db, "host:1", now=now)
        assert job.attempts == 1
        assert defer_job(db, job_id, "deferred: DiskReserveReached: wait", 30, now=now)
        assert (_job(db, job_id).state, _job(db, job_id).attempts) == ("queued", 0)
        assert claim_job(db, "host:1", now=now + timedelta(seconds=29)) is None
        now += timedelta(seconds=30)
    assert not defer_job(db, job_id, "x", 1), "only a running job can be deferred"


def test_bulk_retry_of_dead_jobs_with_filters(db: Database):
    ids = _queue(db, 4, max_attempts=1)
    reasons = ["permanent: InvalidImage: Rows is 0", "limit: TimeLimitExceeded: slow",
               "permanent: UndecodableImage: cannot decode pixel data (JPEG Extended)", "limit: MemoryError: oom"]
    base = utcnow() - timedelta(hours=10)
    for hours, (job_id, reason) in enumerate(zip(ids, reasons, strict=True)):
        claim_job(db, "host:1")
        fail_job(db, job_id, reason, 1, now=base + timedelta(hours=2 * hours))
    assert retry_dead_jobs(db, reason="DECODE", dry_run=True) == [ids[2]]
    assert _job(db, ids[2]).state == "dead", "a dry run changes nothing"
    assert retry_dead_jobs(db, since=base + timedelta(hours=3), reason="limit:") == [ids[3]]
    assert retry_dead_jobs(db, reason="%") == [], "LIKE wildcards in the filter are taken literally"
    assert retry_dead_jobs(db) == [ids[0], ids[1], ids[2]]
    assert {_job(db, i).state for i in ids} == {"queued"}
    with db.session() as session:
        assert {i.state for i in session.scalars(select(Instance))} == {"queued"}


def test_bulk_retry_of_dead_deliveries_with_filters(db: Database):
    _result_for(db, ["pacs", "archive"])
    policy = RetryPolicy(max_attempts=1, base_seconds=1, max_seconds=1)
    t0 = utcnow() - timedelta(hours=5)
    due = due_deliveries(db, now=utcnow())
    record_attempts(db, [AttemptOutcome(due["pacs"][0].id, False, "pacs: association-rejected")], policy, now=t0)
    record_attempts(db, [AttemptOutcome(due["archive"][0].id, False, "archive: connection-failed")], policy,
                    now=t0 + timedelta(hours=2))
    assert retry_dead_deliveries(db, reason="rejected", dry_run=True) == 1
    assert retry_dead_deliveries(db, since=t0 + timedelta(hours=1)) == 1  # the archive's
    assert retry_dead_deliveries(db, peer="archive") == 0
    assert retry_dead_deliveries(db, peer="pacs", reason="REJECTED") == 1
    assert _count(db, Delivery, Delivery.state == "pending") == 2


def test_an_image_skipped_at_receipt_is_recorded_with_its_reason_and_never_queued(db: Database):
    first = arrival()
    outcome = record_instance(db, first, "instance", 5, skip="BodyPartExamined is not KNEE")
    assert outcome.job_id is None and outcome.state == "skipped" and not outcome.duplicate
    again = record_instance(db, first, "instance", 5, skip="BodyPartExamined is not KNEE")
    assert again.duplicate and again.job_id is None
    with db.session() as session:
        instance = session.scalars(select(Instance)).one()
        assert (instance.state, instance.reason, instance.receive_count) == (
            "skipped", "BodyPartExamined is not KNEE", 2)
    assert _count(db, Job) == 0
    study = record_instance(db, arrival(study="9.9"), "study", 5, skip="ViewPosition is not AP or PA")
    assert study.job_id is None and queue_quiet_studies(db, 0, 5, now=utcnow() + timedelta(seconds=10)) == []
