"""A worker process: loads the landmark model once, then claims jobs from the database and runs them until
told to stop. Several run side by side (``processing.workers``), away from the receiving process.

Wake-ups come through counting semaphores (``jobs_ready``: one release per queued job; ``results_ready``:
one per new result), never through ``multiprocessing.Event``: a process killed while waiting on an Event
would block every later ``set()`` forever, while a semaphore release never waits for anyone.

Each job runs in the worker's sandbox, a child process with the model and per-job time and memory limits
(see :mod:`dicomnode.runtime.sandbox`); how a failure is recorded depends on its category (see
:mod:`dicomnode.pipeline.failures`): dead at once, retried once, retried with backoff, or deferred without using
an attempt. While the spool's free space is below ``storage.min_free_mb`` no job is claimed.

Stopping: SIGTERM lets the current job finish, then the process exits; so does the death of the parent
(the service). SIGINT is ignored (the service decides). A worker killed mid-job leaves its job ``running``;
the service requeues it (``requeue_running``) when it notices, or at the next start; if the whole node died,
the job's lease (``processing.lease_seconds``, renewed by a thread of the worker while the job runs) runs out
and any node sharing the database takes the job over. A worker that lost its lease records nothing for the job.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Semaphore
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.jobs import (
    ClaimedJob,
    LeaseLost,
    claim_job,
    complete_job,
    defer_job,
    fail_job,
    renew_lease,
)
from dicomnode.durable import free_space_mb
from dicomnode.filemodes import restrict_umask
from dicomnode.pipeline.analysis import Predictor
from dicomnode.pipeline.failures import (
    DEFERRED,
    LIMIT,
    PERMANENT,
    Failure,
    JobFailure,
    classify,
)
from dicomnode.runtime.logsetup import configure_logging
from dicomnode.runtime.runner import JobRunner
from dicomnode.runtime.sandbox import Sandbox, SandboxLimits, SandboxStartError
from dicomnode.web import events

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_SECONDS = 1.0  # fallback when no wake-up arrives (e.g. jobs queued by another host)
DISK_POLL_SECONDS = 5.0  # how often a paused worker looks at the free space again
MAX_DB_WAIT_SECONDS = 30.0  # longest pause between attempts to record an outcome in an unwritable database


def worker_id(config: NodeConfig, pid: int | None = None) -> str:
    """``node:pid`` (``node.instance_name``), written to jobs.claimed_by (the node part lets start-up recovery
    stay on its own node)."""
    return f"{config.node.instance_name}:{pid or os.getpid()}"


def load_predictor(config: NodeConfig, traced: bool = True) -> Predictor:
    """The configured model, ready to read. ``traced``: its stages traced and optimised for the CPU now (about 4 s
    once, then about 90 ms less per radiograph: ``model.traced``), so that a sandbox's first job does not pay it and
    its memory cap counts it."""
    from model.inference import KneeAligner

    aligner = KneeAligner.load(config.model.weights, device=config.processing.device,
                               confidence_threshold=config.model.confidence_threshold,
                               measurements=config.processing.measurements,
                               reference_ranges=config.processing.site_ranges(), traced=traced)
    aligner.prepare()
    return aligner


def limit_threads(workers: int) -> None:
    """Share the CPU between workers instead of each one using every core."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def parent_watch(stop: threading.Event) -> None:
    """Set ``stop`` when the process that started this one dies (an orphan must not go on working)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(POLL_SECONDS):
            if os.getppid() != parent:
                log.warning("parent process %d is gone; stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _record_failure(db: Database, job: ClaimedJob, failure: Failure, retry_base_seconds: float, me: str) -> str:
    """Record one failed attempt as its category asks (see dicomnode.pipeline.failures); returns the job's state."""
    if failure.category == DEFERRED:
        defer_job(db, job.id, failure.text, retry_base_seconds, worker_id=me)
        return "queued again, no attempt used"
    retry = {PERMANENT: "never", LIMIT: "once"}.get(failure.category, "backoff")
    return fail_job(db, job.id, failure.text, retry_base_seconds, retry=retry, worker_id=me)


class LeaseKeeper:
    """Renews the lease of the job in hand every third of ``lease_seconds`` from a thread, while the job runs, and
    stops once the job is no longer ours (another node took it over after the lease ran out, e.g. while this host
    was suspended or cut off from the database; the fence then refuses this worker's writes)."""

    def __init__(self, db: Database, job_id: int, me: str, lease_seconds: float) -> None:
        self.db, self.job_id, self.me, self.lease_seconds = db, job_id, me, lease_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{job_id}", daemon=True)

    def _renew(self) -> None:
        while not self._done.wait(self.lease_seconds / 3):
            try:
                if not renew_lease(self.db, self.job_id, self.me, self.lease_seconds):
                    log.warning("job %d: lease lost (taken over by another node)", self.job_id)
                    return
            except SQLAlchemyError as exc:  # the next renewal tries again; the lease may run out meanwhile
                log.error("job %d: cannot renew its lease (%s)", self.job_id, type(exc).__name__)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


class DiskGate:
    """Processing pauses while the spool's free space is below ``storage.min_free_mb`` (logged once per pause)."""

    def __init__(self, storage_dir: Path, min_free_mb: float) -> None:
        self.storage_dir, self.min_free_mb = storage_dir, min_free_mb
        self.paused = False

    def open(self) -> bool:
        if not self.min_free_mb:
            return True
        free = free_space_mb(self.storage_dir)
        below = free < self.min_free_mb
        if below != self.paused:
            self.paused = below
            if below:
                log.warning("processing paused: %.0f MiB free under %s, below storage.min_free_mb (%.0f)",
                            free, self.storage_dir, self.min_free_mb)
            else:
                log.info("processing resumed: %.0f MiB free", free)
        return not below


def _persist(action: Callable[[], T], stop: threading.Event, what: str) -> T:
    """Run a database write until it succeeds: a full disk or an unreachable database must not lose the outcome
    of a job (which stays ``running``, claimed by this worker, meanwhile). Gives up only when stopping."""
    delay = 1.0
    while True:
        try:
            return action()
        except SQLAlchemyError as exc:
            if stop.is_set():
                raise
            log.error("cannot record %s (%s); trying again in %.0f s", what, type(exc).__name__, delay)
            stop.wait(delay)
            delay = min(delay * 2, MAX_DB_WAIT_SECONDS)


def work_loop(runner: JobRunner, db: Database, me: str, retry_base_seconds: float, stop: threading.Event,
              jobs_ready: Semaphore | None = None, results_ready: Semaphore | None = None) -> None:
    """Claim and run jobs until ``stop`` is set; the job in hand is always finished first. Nothing is claimed
    while the spool is below its disk reserve, or while the database cannot be reached."""
    gate = DiskGate(Path(runner.config.storage.dir), runner.config.storage.min_free_mb)
    lease_seconds = runner.config.processing.lease_seconds
    while not stop.is_set():
        try:
            job = claim_job(db, me, lease_seconds=lease_seconds) if gate.open() else None
        except SQLAlchemyError as exc:
            log.error("cannot claim a job (%s); trying again in %.0f s", type(exc).__name__, DISK_POLL_SECONDS)
            stop.wait(DISK_POLL_SECONDS)
            continue
        if job is None:
            if jobs_ready is not None and not gate.paused:
                jobs_ready.acquire(timeout=POLL_SECONDS)
            else:
                stop.wait(POLL_SECONDS if not gate.paused else DISK_POLL_SECONDS)
            continue
        started = time.monotonic()
        try:
            with LeaseKeeper(db, job.id, me, lease_seconds):
                created = runner.run(job, me)
        except LeaseLost:
            log.warning("job %d was taken over by another node after its lease ran out; nothing recorded here",
                        job.id)
            continue
        except JobFailure as failed:
            failure = failed.failure
        except Exception as exc:  # noqa: BLE001 - any other failure of one job is recorded, never fatal
            failure = classify(exc, "record")
        else:
            if _persist(lambda job=job: complete_job(db, job.id, me), stop, f"job {job.id} as done"):
                events.job_finished("done", time.monotonic() - started)
            if created and results_ready is not None:
                results_ready.release()
            continue
        state = _persist(lambda job=job, failure=failure: _record_failure(db, job, failure, retry_base_seconds, me),
                         stop, f"the failure of job {job.id}")
        events.job_finished(state, time.monotonic() - started)
        log.warning("job %d attempt %d/%d failed (%s): %s", job.id, job.attempts, job.max_attempts, state,
                    failure.text)


def sandbox_limits(config: NodeConfig) -> SandboxLimits:
    return SandboxLimits(config.processing.job_time_limit_seconds, config.processing.job_memory_mb)


def worker_main(config: NodeConfig, jobs_ready: Semaphore, results_ready: Semaphore, ready: Semaphore) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn target). ``ready`` is released once its
    sandbox has loaded the model."""
    configure_logging(config.logging.level)
    events.prepare(config)
    restrict_umask()
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent_watch(stop)
    sandbox = Sandbox(config, sandbox_limits(config))
    try:
        sandbox.start()
    except SandboxStartError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    db = Database(config.database.url, create=False)
    me = worker_id(config)
    runner = JobRunner(config, db, sandbox.run)
    log.info("worker %s ready (sandbox pid %s: %g s per job, address space capped at %d MiB)", me, sandbox.pid,
             config.processing.job_time_limit_seconds, (sandbox.memory_cap_bytes or 0) // (1024 * 1024))
    ready.release()
    try:
        work_loop(runner, db, me, config.processing.retry_base_seconds, stop, jobs_ready, results_ready)
    finally:
        sandbox.close()
        db.dispose()
        log.info("worker %s stopped", me)
