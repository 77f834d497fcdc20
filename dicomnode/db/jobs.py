"""The job queue: atomic claiming, completion, failure with exponential backoff and a dead-letter state,
recovery of jobs left running by a crash, and manual requeue.

Claiming uses ``SELECT .. FOR UPDATE SKIP LOCKED`` on PostgreSQL (several workers on several hosts) and a
conditional ``UPDATE .. WHERE state = 'queued'`` on SQLite (whose writers are serialised anyway). A claim
counts as an attempt, so a job that keeps killing its worker still ends up dead.

A claim is a lease (``lease_expires_at``): the worker renews it while it works (``renew_lease``); when a host
dies, its jobs' leases run out and any node's scheduler puts them back in the queue (``expire_leases``), once:
the expiry is one conditional UPDATE. The worker that lost its lease can no longer record anything for the job
(``hold_job``, the fence taken in the same transaction as every result), so a job taken over never gets a
second set of results.

How a failed attempt is retried depends on what failed (``fail_job``'s ``retry``): ``backoff`` (transient
errors: exponential backoff until ``max_attempts``), ``once`` (a time or memory limit or a crash: retried once,
then dead), ``never`` (the image can never succeed: dead at once). A job that had to wait for disk space is
deferred (``defer_job``): back to the queue without using an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from dicomnode.db.engine import Database
from dicomnode.db.models import (
    INSTANCE_FAILED,
    INSTANCE_PROCESSED,
    INSTANCE_QUEUED,
    INSTANCE_SKIPPED,
    JOB_DEAD,
    JOB_DONE,
    JOB_FAILED,
    JOB_PROCESS_INSTANCE,
    JOB_QUEUED,
    JOB_RUNNING,
    Instance,
    Job,
    utcnow,
)

INTERRUPTED = "interrupted: the worker stopped while running this job"


def backoff_seconds(base: float, attempt: int, cap: float | None = None) -> float:
    """Delay before the retry that follows failed attempt number ``attempt`` (1-based): base * 2**(attempt-1)."""
    delay = base * 2 ** max(attempt - 1, 0)
    return min(delay, cap) if cap is not None else delay


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a claimed job."""

    id: int
    kind: str
    instance_id: int | None
    study_id: int | None
    attempts: int
    max_attempts: int


def _claimed(job: Job) -> ClaimedJob:
    return ClaimedJob(job.id, job.kind, job.instance_id, job.study_id, job.attempts, job.max_attempts)


DEFAULT_LEASE_SECONDS = 60.0
LEASE_EXPIRED = "interrupted: lease expired ({holder} stopped renewing it)"


class LeaseLost(RuntimeError):
    """This worker's claim on a job ended (the lease expired and the job was taken over, or it was requeued)."""


def _claim_values(worker_id: str, now: datetime, lease_seconds: float) -> dict:
    return {"state": JOB_RUNNING, "attempts": Job.attempts + 1, "claimed_by": worker_id,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "started_at": now, "finished_at": None, "updated_at": now}


def _due(now: datetime):
    return select(Job).where(Job.state == JOB_QUEUED, Job.next_attempt_at <= now).order_by(
        Job.next_attempt_at, Job.id).limit(1)


def claim_job(db: Database, worker_id: str, now: datetime | None = None,
              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> ClaimedJob | None:
    """Atomically take the oldest due queued job for ``worker_id``, leased for ``lease_seconds``; None when
    nothing is due."""
    now = now or utcnow()
    if db.is_postgres:
        with db.transaction() as session:
            job_id = session.execute(
                _due(now).with_only_columns(Job.id).with_for_update(skip_locked=True)).scalar_one_or_none()
            if job_id is None:
                return None
            session.execute(update(Job).where(Job.id == job_id).values(**_claim_values(worker_id, now, lease_seconds)))
            return _claimed(session.get(Job, job_id))

    def attempt() -> ClaimedJob | None:
        with db.session() as session:
            for _ in range(20):  # lost races: another worker claimed the candidate first
                job_id = session.execute(_due(now).with_only_columns(Job.id)).scalar_one_or_none()
                if job_id is None:
                    return None
                won = session.execute(update(Job).where(Job.id == job_id, Job.state == JOB_QUEUED)
                                      .values(**_claim_values(worker_id, now, lease_seconds))).rowcount == 1
                session.commit()
                if won:
                    return _claimed(session.get(Job, job_id))
            return None

    return db.retrying(attempt)


def _held(job_id: int, worker_id: str | None) -> list:
    condition = [Job.id == job_id, Job.state == JOB_RUNNING]
    if worker_id is not None:
        condition.append(Job.claimed_by == worker_id)
    return condition


def complete_job(db: Database, job_id: int, worker_id: str | None = None) -> bool:
    """Mark a running job done. False if it was no longer running (e.g. requeued after a presumed crash) or, with
    ``worker_id``, no longer held by that worker."""
    now = utcnow()
    with db.transaction() as session:
        return session.execute(update(Job).where(*_held(job_id, worker_id)).values(
            state=JOB_DONE, finished_at=now, updated_at=now, last_error=None, lease_expires_at=None)).rowcount == 1


def renew_lease(db: Database, job_id: int, worker_id: str, lease_seconds: float,
                now: datetime | None = None) -> bool:
    """Extend the lease of a job ``worker_id`` holds; False if it no longer holds it (taken over or requeued)."""
    now = now or utcnow()
    with db.transaction() as session:
        return session.execute(update(Job).where(*_held(job_id, worker_id)).values(
            lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)).rowcount == 1


def hold_job(session: Session, job_id: int, worker_id: str) -> None:
    """The fence: in the caller's transaction, lock the job row if ``worker_id`` still holds the job, or raise
    LeaseLost. Taken first in every transaction that records a job's outcome, so that a worker whose lease
    expired (and whose job another node took over) records nothing."""
    if session.execute(update(Job).where(*_held(job_id, worker_id)).values(updated_at=utcnow())).rowcount != 1:
        raise LeaseLost(f"job {job_id} is no longer held by {worker_id}")


@dataclass(frozen=True)
class ExpiredLease:
    """A job taken back from a holder whose lease ran out."""

    job_id: int
    holder: str
    state: str  # queued again, or dead if that claim was its last attempt


def expire_leases(db: Database, now: datetime | None = None) -> list[ExpiredLease]:
    """Running jobs whose lease ran out (their host died or hangs) go back to the queue, or dead if that claim
    used their last attempt. Each is taken back by one conditional UPDATE (the same holder, the lease still
    expired), so a renewal that came first wins, and of several nodes doing this at once only one succeeds."""
    now = now or utcnow()
    expired: list[ExpiredLease] = []
    with db.transaction() as session:
        query = select(Job.id, Job.claimed_by).where(Job.state == JOB_RUNNING, Job.lease_expires_at < now)
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        for job_id, holder in session.execute(query.order_by(Job.id)).all():
            error = LEASE_EXPIRED.format(holder=holder or "?")
            won = session.execute(update(Job).where(
                Job.id == job_id, Job.state == JOB_RUNNING, Job.claimed_by == holder, Job.lease_expires_at < now)
                .values(state=JOB_QUEUED, next_attempt_at=now, claimed_by=None, lease_expires_at=None,
                        last_error=error, updated_at=now)).rowcount == 1
            if not won:
                continue
            job = session.get(Job, job_id)
            if job.attempts >= job.max_attempts:
                _bury(session, job, error, now)
            expired.append(ExpiredLease(job_id, holder or "?", job.state))
    return expired


def job_instances(session: Session, job: Job) -> list[Instance]:
    """The instances a job covers: its one instance, or its study's instances that are queued or failed
    (those still waiting for the study's quiet period, and finished ones, are left alone)."""
    if job.kind == JOB_PROCESS_INSTANCE:
        instance = session.get(Instance, job.instance_id) if job.instance_id is not None else None
        return [instance] if instance is not None else []
    return list(session.scalars(select(Instance).where(
        Instance.study_id == job.study_id, Instance.state.in_([INSTANCE_QUEUED, INSTANCE_FAILED]))
        .order_by(Instance.id)))


def _bury(session, job: Job, error: str, now: datetime) -> None:
    job.state = JOB_DEAD
    job.finished_at = now
    for instance in job_instances(session, job):
        if instance.state not in (INSTANCE_PROCESSED, INSTANCE_SKIPPED):
            instance.state = INSTANCE_FAILED
            instance.reason = error


RETRY_POLICIES = ("backoff", "once", "never")


def _category(error: str) -> str:
    """The ``"<category>:"`` prefix of a stored error (see dicomnode.pipeline.failures), "" if none."""
    head, sep, _ = error.partition(":")
    return head if sep and head.isalpha() else ""


def fail_job(db: Database, job_id: int, error: str, retry_base_seconds: float,
             now: datetime | None = None, retry: Literal["backoff", "once", "never"] = "backoff",
             worker_id: str | None = None) -> str:
    """Record a failed attempt: ``failed`` with next_attempt_at after the backoff, or ``dead`` (its unfinished
    instances then become ``failed``) when the job has used its ``max_attempts``, or at once with
    ``retry="never"``, or with ``retry="once"`` when the previous attempt failed in the same category (the
    prefix of ``error`` before its first colon). With ``worker_id``, nothing is recorded unless that worker still
    holds the job. Returns the new state."""
    if retry not in RETRY_POLICIES:
        raise ValueError(f"retry must be one of {RETRY_POLICIES}")
    now = now or utcnow()
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=db.is_postgres)
        if job is None or job.state != JOB_RUNNING or (worker_id is not None and job.claimed_by != worker_id):
            return job.state if job is not None else "missing"
        job.lease_expires_at = None
        category = _category(error)
        repeated = bool(category) and _category(job.last_error or "") == category
        job.last_error = error[:4000]
        job.claimed_by = None
        if job.attempts >= job.max_attempts or retry == "never" or (retry == "once" and repeated):
            _bury(session, job, job.last_error, now)
        else:
            job.state = JOB_FAILED
            job.next_attempt_at = now + timedelta(seconds=backoff_seconds(retry_base_seconds, job.attempts))
        return job.state


def defer_job(db: Database, job_id: int, reason: str, delay_seconds: float, now: datetime | None = None,
              worker_id: str | None = None) -> bool:
    """Put a running job back in the queue after ``delay_seconds`` without using an attempt (its claim is given
    back): for conditions of the node, not of the job, such as a disk below its reserve. False if it was no
    longer running."""
    now = now or utcnow()
    with db.transaction() as session:
        return session.execute(update(Job).where(*_held(job_id, worker_id)).values(
            state=JOB_QUEUED, attempts=case((Job.attempts > 0, Job.attempts - 1), else_=0), claimed_by=None,
            lease_expires_at=None,
            last_error=reason[:4000],
            next_attempt_at=now + timedelta(seconds=delay_seconds), updated_at=now)).rowcount == 1


def promote_due_retries(db: Database, now: datetime | None = None) -> int:
    """Move failed jobs whose backoff has passed back to ``queued``. Returns how many."""
    now = now or utcnow()
    with db.transaction() as session:
        return session.execute(update(Job).where(Job.state == JOB_FAILED, Job.next_attempt_at <= now)
                               .values(state=JOB_QUEUED, updated_at=now)).rowcount


def requeue_running(db: Database, claimed_by_prefix: str | None = None, reason: str = INTERRUPTED,
                    now: datetime | None = None, claimed_by: str | None = None) -> int:
    """Jobs left ``running`` (by a crash, or a worker that died) go back to ``queued`` at once, or ``dead``
    if that claim used their last attempt. ``claimed_by_prefix`` limits it to one host (``"host:"``) and
    ``claimed_by`` to one worker (``"host:pid"``), so that nodes sharing a PostgreSQL database leave each
    other's jobs alone. Returns how many jobs were requeued or buried."""
    now = now or utcnow()
    with db.transaction() as session:
        query = select(Job).where(Job.state == JOB_RUNNING)
        if claimed_by_prefix is not None:
            query = query.where(Job.claimed_by.startswith(claimed_by_prefix, autoescape=True))
        if claimed_by is not None:
            query = query.where(Job.claimed_by == claimed_by)
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        for job in jobs:
            job.last_error = reason
            job.claimed_by = None
            job.lease_expires_at = None
            if job.attempts >= job.max_attempts:
                _bury(session, job, reason, now)
            else:
                job.state = JOB_QUEUED
                job.next_attempt_at = now
        return len(jobs)


def _requeue(session, job: Job, now: datetime) -> None:
    for instance in job_instances(session, job):
        if instance.state == INSTANCE_FAILED:
            instance.state = INSTANCE_QUEUED
            instance.reason = None
    job.state = JOB_QUEUED
    job.attempts = 0
    job.next_attempt_at = now
    job.finished_at = None
    job.updated_at = now


def retry_job(db: Database, job_id: int) -> Job:
    """Manual requeue (``dicomnode jobs retry``): a dead or failed job gets a fresh set of attempts and its
    failed instances are queued again. Raises LookupError if there is no such job, ValueError if it is
    not dead or failed."""
    now = utcnow()
    with db.transaction() as session:
        job = session.get(Job, job_id, with_for_update=db.is_postgres)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if job.state not in (JOB_DEAD, JOB_FAILED):
            raise ValueError(f"job {job_id} is {job.state}; only dead or failed jobs can be retried")
        _requeue(session, job, now)
        return job


def retry_dead_jobs(db: Database, since: datetime | None = None, reason: str | None = None,
                    dry_run: bool = False) -> list[int]:
    """Bulk requeue (``dicomnode jobs retry --dead``): every dead job, or those that died at or after ``since``
    and whose last error contains ``reason`` (case-insensitive), gets a fresh set of attempts. Returns their
    ids (the ones that would be requeued, with ``dry_run``)."""
    now = utcnow()
    with db.transaction() as session:
        query = select(Job).where(Job.state == JOB_DEAD).order_by(Job.id)
        if since is not None:
            query = query.where(Job.finished_at >= since)
        if reason:
            query = query.where(func.lower(Job.last_error).contains(reason.lower(), autoescape=True))
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        if not dry_run:
            for job in jobs:
                _requeue(session, job, now)
        return [job.id for job in jobs]


def list_jobs(db: Database, state: str | None = None, limit: int = 100) -> list[Job]:
    """The most recent jobs, newest first, optionally in one state."""
    with db.session() as session:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Job.state == state)
        return list(session.scalars(query))
