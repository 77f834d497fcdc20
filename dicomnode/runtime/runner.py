"""Running one claimed job: each of its instances goes through the image pipeline (in the worker's sandbox, see
:mod:`dicomnode.runtime.sandbox`), and what comes back is recorded: a result with one pending delivery per
destination, the reason it was skipped, or the reason it failed for good.

Safe to run again after a crash at any point: finished instances are passed over, output files are
overwritten in place (with the same UIDs, which the outputs derive from the source and the prediction),
and the database keeps at most one result per source instance.

An instance that can never succeed (a ``permanent`` failure) is marked failed with its reason and the job goes
on with its other instances; the job then ends dead with that reason. Any other failure stops the job, which
the worker records for a retry (see :mod:`dicomnode.pipeline.failures`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.jobs import ClaimedJob, LeaseLost, job_instances
from dicomnode.db.models import INSTANCE_PROCESSED, INSTANCE_SKIPPED, Job
from dicomnode.db.results import Holder, mark_failed, mark_skipped, save_result
from dicomnode.pipeline.analysis import STATUS_SKIPPED, Predictor
from dicomnode.pipeline.failures import Failure, JobFailure, classify
from dicomnode.pipeline.task import Task, TaskResult, run_task
from dicomnode.web import events

log = logging.getLogger(__name__)
MiB = 1024 * 1024
Executor = Callable[[Task], TaskResult]  # raises JobFailure


@dataclass(frozen=True)
class WorkItem:
    instance_id: int
    sop_instance_uid: str
    study_instance_uid: str
    path: str
    peer: str | None
    calling_ae: str
    state: str


def in_process(predictor: Predictor) -> Executor:
    """An executor that runs tasks in this process (tests, and ``dicomnode process``): no limits, no sandbox."""
    return lambda task: run_task(task, predictor)


def task_for(config: NodeConfig, item: WorkItem) -> Task:
    """The sandbox's task for one instance, with the bounds and reserve of the configuration."""
    return Task(path=item.path, study_instance_uid=item.study_instance_uid, sop_instance_uid=item.sop_instance_uid,
                kinds=tuple(config.processing.outputs), outputs_dir=str(config.storage.dir),
                max_decoded_bytes=config.processing.max_decoded_mb * MiB,
                min_free_mb=float(config.storage.min_free_mb), memory_bytes=config.processing.job_memory_mb * MiB)


class JobRunner:
    """Runs claimed jobs through an executor: the worker's sandbox, or (given a predictor) in this process."""

    def __init__(self, config: NodeConfig, db: Database, executor: Executor | Predictor) -> None:
        self.config = config
        self.db = db
        self.execute: Executor = in_process(executor) if hasattr(executor, "predict") else executor

    def work_items(self, job_id: int) -> list[WorkItem]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return []
            return [WorkItem(i.id, i.sop_instance_uid, i.study_instance_uid, i.path, i.peer, i.calling_ae, i.state)
                    for i in job_instances(session, job)]

    def run(self, job: ClaimedJob, worker_id: str | None = None) -> int:
        """Process every unfinished instance of ``job``. Returns how many produced a new result. Raises
        JobFailure: at once for a failure that is not permanent; after the other instances for a permanent one
        (the failed instance keeps its reason). With ``worker_id`` every write is fenced by the job's lease
        (LeaseLost once another node took the job over)."""
        holder = (job.id, worker_id) if worker_id is not None else None
        created = 0
        permanent: Failure | None = None
        for item in self.work_items(job.id):
            if item.state in (INSTANCE_PROCESSED, INSTANCE_SKIPPED):
                continue
            try:
                created += self.process(job.id, item, holder)
            except JobFailure as failed:
                if not failed.failure.permanent:
                    raise
                mark_failed(self.db, item.instance_id, failed.failure.text, holder)
                log.warning("instance %s failed for good: %s", item.sop_instance_uid, failed.failure.text)
                permanent = permanent or failed.failure
        if permanent is not None:
            raise JobFailure(permanent)
        return created

    def process(self, job_id: int, item: WorkItem, holder: Holder | None = None) -> bool:
        started = time.perf_counter()
        outcome = self.execute(task_for(self.config, item))
        try:
            return self._record(job_id, item, outcome, started, holder)
        except (JobFailure, LeaseLost):
            raise
        except Exception as exc:  # noqa: BLE001 - database errors: the job is retried
            raise JobFailure(classify(exc, "record")) from None

    def _record(self, job_id: int, item: WorkItem, outcome: TaskResult, started: float,
                holder: Holder | None) -> bool:
        if outcome.status == STATUS_SKIPPED:
            mark_skipped(self.db, item.instance_id, outcome.reason or "skipped", holder)
            events.result_recorded(STATUS_SKIPPED)
            log.info("instance %s skipped: %s", item.sop_instance_uid, outcome.reason)
            return False
        summary = outcome.summary
        _, created = save_result(
            self.db, job_id=job_id, instance_id=item.instance_id, source_sop_instance_uid=item.sop_instance_uid,
            status=outcome.status, summary=summary, outputs=outcome.files,
            destinations=self.config.destinations(item.peer, item.calling_ae), holder=holder)
        if created:
            events.result_recorded(outcome.status)
        log.info("instance %s processed in %.0f ms: %s, aTFA FTS %.1f deg, FNTS %.1f deg, %d output(s)%s",
                 item.sop_instance_uid, 1000 * (time.perf_counter() - started), outcome.status,
                 summary.get("atfa_fts_deg", float("nan")), summary.get("atfa_fnts_deg", float("nan")),
                 len(outcome.files), "" if created else " (result already recorded)")
        return created
