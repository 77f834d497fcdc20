"""A worker process: loads the landmark model once, then claims jobs from the database and runs them until
told to stop. Several run side by side (``processing.workers``), away from the receiving process.

Wake-ups come through counting semaphores (``jobs_ready``: one release per queued job; ``results_ready``:
one per new result), never through ``multiprocessing.Event``: a process killed while waiting on an Event
would block every later ``set()`` forever, while a semaphore release never waits for anyone.

Stopping: SIGTERM lets the current job finish, then the process exits; so does the death of the parent
(the service). SIGINT is ignored (the service decides). A worker killed mid-job leaves its job ``running``;
the service requeues it (``requeue_running``) when it notices, or at the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import traceback
from multiprocessing.synchronize import Semaphore

from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.jobs import claim_job, complete_job, fail_job
from dicomnode.process.logsetup import configure_logging
from dicomnode.process.runner import JobRunner, Predictor

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # fallback when no wake-up arrives (e.g. jobs queued by another host)


def worker_id(pid: int | None = None) -> str:
    """``host:pid``, written to jobs.claimed_by (the host part lets start-up recovery stay on its own host)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def load_predictor(config: NodeConfig) -> Predictor:
    from model.inference import KneeAligner

    return KneeAligner.load(config.model.weights, device=config.processing.device,
                            confidence_threshold=config.model.confidence_threshold,
                            measurements=config.processing.measurements,
                            reference_ranges=config.processing.site_ranges())


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


def work_loop(runner: JobRunner, db: Database, me: str, retry_base_seconds: float, stop: threading.Event,
              jobs_ready: Semaphore | None = None, results_ready: Semaphore | None = None) -> None:
    """Claim and run jobs until ``stop`` is set; the job in hand is always finished first."""
    while not stop.is_set():
        job = claim_job(db, me)
        if job is None:
            if jobs_ready is not None:
                jobs_ready.acquire(timeout=POLL_SECONDS)
            else:
                stop.wait(POLL_SECONDS)
            continue
        try:
            created = runner.run(job)
        except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded, never fatal to the worker
            log.debug("job %d failed:\n%s", job.id, traceback.format_exc())
            state = fail_job(db, job.id, f"{type(exc).__name__}: {exc}", retry_base_seconds)
            # The message can quote attribute values of the image: only its type at WARNING.
            log.warning("job %d attempt %d/%d failed (%s): %s (details at DEBUG and in `dicomnode jobs show`)",
                        job.id, job.attempts, job.max_attempts, state, type(exc).__name__)
            log.debug("job %d error: %s", job.id, exc)
            continue
        complete_job(db, job.id, me)
        if created and results_ready is not None:
            results_ready.release()


def worker_main(config: NodeConfig, jobs_ready: Semaphore, results_ready: Semaphore, ready: Semaphore) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn target). ``ready`` is released once the
    model is loaded."""
    configure_logging(config.logging.level)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent_watch(stop)
    limit_threads(config.processing.workers)
    try:
        predictor = load_predictor(config)
    except (OSError, ValueError) as exc:  # WeightsError is a ValueError: missing file, wrong scheme, ...
        log.error("cannot load the model (model.weights = %s): %s", config.model.weights or "shipped", exc)
        raise SystemExit(1) from None
    db = Database(config.database.url, create=False)
    me = worker_id()
    runner = JobRunner(config, db, predictor)
    log.info("worker %s ready", me)
    ready.release()
    try:
        work_loop(runner, db, me, config.processing.retry_base_seconds, stop, jobs_ready, results_ready)
    finally:
        db.dispose()
        log.info("worker %s stopped", me)
