"""The service's periodic work, run by an APScheduler background scheduler in the main process:

- ``retries``: failed jobs whose backoff has passed go back to the queue (every second);
- ``leases``: running jobs whose lease ran out (their node died or hangs) go back to the queue, with an audit
  event (every quarter of ``processing.lease_seconds``; any node sharing the database may do it, once per job);
- ``study-quiet``: with ``trigger: study``, studies quiet for ``study_quiet_seconds`` get a study job;
- ``dispatch``: due deliveries are sent (every few seconds, and at once when a worker reports new results);
- ``retention``: finished work older than ``storage.retention_days`` is removed, and audit events older than
  ``audit.retention_days`` (hourly).

Jobs are claimed by the worker processes themselves; the scheduler only wakes them (``jobs_ready``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE
from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.audit import purge_audit
from dicomnode.db.intake import queue_quiet_studies
from dicomnode.db.jobs import expire_leases, promote_due_retries
from dicomnode.dispatch.dispatcher import Dispatcher
from dicomnode.runtime.retention import purge_expired

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 1.0
STUDY_QUIET_INTERVAL_S = 1.0
DISPATCH_INTERVAL_S = 2.0
RETENTION_INTERVAL_S = 3600.0
RETENTION_FIRST_RUN_S = 60.0
DISPATCH_JOB = "dispatch"


def build_scheduler(config: NodeConfig, db: Database, dispatcher: Dispatcher, wake_workers: Callable[[], None],
                    audit: AuditTrail | None = None) -> BackgroundScheduler:
    """A scheduler (not started) with the node's periodic jobs; each runs at most once at a time."""
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 60})

    def retries() -> None:
        if promote_due_retries(db):
            wake_workers()

    def leases() -> None:
        expired = expire_leases(db)
        for job in expired:
            log.warning("job %d taken back from %s, whose lease ran out: %s", job.job_id, job.holder, job.state)
            if audit is not None:
                audit.record("job-taken-over", MINOR_FAILURE, reference=f"job {job.job_id}",
                             reason=f"lease of {job.holder} ran out; now {job.state}")
        if expired:
            wake_workers()

    def quiet_studies() -> None:
        queued = queue_quiet_studies(db, config.processing.study_quiet_seconds, config.processing.max_attempts)
        if queued:
            log.info("queued %d study job(s) after %.0f s without new instances", len(queued),
                     config.processing.study_quiet_seconds)
            wake_workers()

    def retention() -> None:
        purge_expired(db, Path(config.storage.dir), config.storage.retention_days)
        removed = purge_audit(db, config.audit.retention_days)
        if removed:
            log.info("retention: removed %d audit event(s) older than %s days", removed,
                     config.audit.retention_days)

    now = datetime.now(UTC)
    scheduler.add_job(retries, "interval", seconds=RETRY_INTERVAL_S, id="retries")
    scheduler.add_job(leases, "interval", seconds=max(1.0, config.processing.lease_seconds / 4), id="leases")
    if config.processing.trigger == "study":
        scheduler.add_job(quiet_studies, "interval", seconds=STUDY_QUIET_INTERVAL_S, id="study-quiet")
    scheduler.add_job(dispatcher.run_once, "interval", seconds=DISPATCH_INTERVAL_S, id=DISPATCH_JOB)
    scheduler.add_job(retention, "interval", seconds=RETENTION_INTERVAL_S, id="retention",
                      next_run_time=now + timedelta(seconds=RETENTION_FIRST_RUN_S))
    return scheduler


def run_soon(scheduler: BackgroundScheduler, job_id: str) -> None:
    """Bring a periodic job's next run forward to now (a no-op once the scheduler is shut down)."""
    if scheduler.running:
        scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
