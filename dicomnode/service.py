"""``dicomnode serve``: the receiver in a process of its own, ``processing.workers`` worker processes with the
model, and in the main process the scheduler (retries, study quiet periods, dispatch, retention) and a
supervisor that restarts a child that died.

Data flow: receiver --(instances + jobs rows)--> database <--claim-- workers --(results, deliveries)-->
database <-- dispatcher --C-STORE--> destinations. Semaphores between the processes only wake the next
stage early (see ``dicomnode.runtime.worker``); everything that matters is in the database, so a crash at
any point loses nothing acknowledged.

Shutdown (SIGTERM or SIGINT to the main process): SIGTERM to the receiver, which stops accepting and
finishes its associations; then SIGTERM to the workers, which finish the job in hand within the grace
period (then they are killed and their jobs requeued); the scheduler finishes a running dispatch.
Children also stop by themselves when the main process dies.

With ``http.enabled`` the main process also serves the status page, ``/healthz``, ``/readyz`` and
``/metrics`` (``dicomnode.web``) from a thread, from before the children start until after they stopped.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Semaphore
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from dicomnode.audit import AuditTrail
from dicomnode.audit.events import MINOR_FAILURE
from dicomnode.config import NodeConfig
from dicomnode.db import Database
from dicomnode.db.deliveries import release_delivery_claims
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import requeue_running
from dicomnode.dispatch.dispatcher import Dispatcher
from dicomnode.filemodes import private_paths, remove_world_access, restrict_umask
from dicomnode.receive.instance import StoredInstance
from dicomnode.runtime.logsetup import configure_logging
from dicomnode.runtime.scheduler import DISPATCH_JOB, build_scheduler, run_soon
from dicomnode.runtime.worker import parent_watch, worker_id, worker_main
from dicomnode.web import events, multiproc
from dicomnode.web.control import ProcessState
from model.selection import skip_reason_for_tags

log = logging.getLogger(__name__)
DEFAULT_GRACE_SECONDS = 30.0
START_TIMEOUT_SECONDS = 300.0  # loading the model on a busy CPU can take a while
SUPERVISE_INTERVAL_S = 1.0
RESTART_RESET_SECONDS = 60.0  # a child that ran this long before dying is restarted at once
RESTART_MAX_DELAY_S = 60.0


class ServiceError(RuntimeError):
    """The service could not start (a child died during start-up, e.g. the port is taken or no weights)."""


@dataclass
class RecordInstances:
    """The set-up of a receiving process, run once in each (picklable, so that every association process of
    ``node.receivers`` > 1 builds its own): logging, metrics, file modes, the audit trail, and an ``on_stored``
    that records the instance and queues its job in the database, then wakes a worker. An image whose attributes
    say it is not a knee AP/PA radiograph is recorded as skipped with the reason and gets no job."""

    config: NodeConfig
    jobs_ready: Semaphore

    def __call__(self) -> tuple[Callable[[StoredInstance], None], AuditTrail]:
        config = self.config
        configure_logging(config.logging.level)
        events.prepare(config)
        restrict_umask()
        db = Database(config.database.url, create=False)
        audit = AuditTrail.for_config(config, db)

        def on_stored(stored: StoredInstance) -> None:
            skip = skip_reason_for_tags(stored.text)  # not a knee AP/PA radiograph: recorded, never queued
            outcome = record_instance(db, stored, config.processing.trigger, config.processing.max_attempts,
                                      skip=skip)
            log.debug("instance %s from %s recorded: %s%s", stored.sop_instance_uid, stored.peer_name,
                      outcome.state, " (duplicate)" if outcome.duplicate else "")
            events.instance_received(stored.peer_name)
            if skip and not outcome.duplicate:
                log.info("instance %s skipped at receipt: %s", stored.sop_instance_uid, skip)
                events.result_recorded("skipped")
            if outcome.job_id is not None:
                self.jobs_ready.release()

        return on_stored, audit


def receiver_main(config: NodeConfig, jobs_ready: Semaphore, ready: Semaphore) -> None:
    """Entry point of the receiver process: store instances, record them and queue their jobs (with
    ``node.receivers`` > 1, through its association processes)."""
    from dicomnode.receive import Receiver

    hooks = RecordInstances(config, jobs_ready)
    on_stored, audit = hooks()
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent_watch(stop)
    receiver = Receiver(config, on_stored, audit, hooks=hooks)
    receiver.start()
    ready.release()
    try:
        while not stop.wait(1.0):
            receiver.supervise()
    finally:
        receiver.stop()
        audit.close()


def health_line(config: NodeConfig, db: Database) -> str:
    """One line with what an operator checks first: identity, port, peers, database (no password)."""
    peers = ", ".join(f"{p.name}={p.ae_title}@{p.host}:{p.port}{'' if p.send_results else ' (no results)'}"
                      for p in config.peers) or "none (every association will be rejected)"
    return (f"KneeAlign node up: AE {config.node.ae_title} on {config.node.bind}:{config.node.port}; "
            f"peers: {peers}; database: {db.redacted_url}; spool: {config.storage.dir}; "
            f"trigger: {config.processing.trigger}; outputs: {','.join(config.processing.outputs)}; "
            f"workers: {config.processing.workers}")


@dataclass
class _Child:
    name: str
    process: SpawnProcess
    ready: object  # a multiprocessing Semaphore released when the child is serving
    restarts: int = 0  # consecutive quick deaths, for the restart backoff
    started: float = field(default_factory=time.monotonic)
    restart_at: float | None = None  # when a dead child is due for its restart
    is_ready: bool = False  # released its ready semaphore (the receiver listens, a worker has the model)

    def poll_ready(self, timeout: float = 0.0) -> bool:
        """True once the child has reported ready (waits up to ``timeout`` seconds for it)."""
        if not self.is_ready and self.ready.acquire(timeout=timeout):
            self.is_ready = True
        return self.is_ready


@dataclass
class Service:
    """The running node. ``start()`` then ``wait()`` (blocks until a signal or ``request_stop()``)."""

    config: NodeConfig
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    _children: dict[str, _Child] = field(default_factory=dict, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self._mp = multiprocessing.get_context("spawn")
        self._jobs_ready = self._mp.Semaphore(0)
        self._results_ready = self._mp.Semaphore(0)
        self.db: Database | None = None
        self.audit: AuditTrail | None = None
        self.scheduler = None
        self.host = socket.gethostname()
        self.name = self.config.node.instance_name  # in the claims of its jobs, and in a queue shared with other nodes
        self.started_at = datetime.now(UTC).replace(tzinfo=None)
        self._started = False
        self._http = None
        self._metrics_dir: Path | None = None

    # -- children -------------------------------------------------------------------------------------
    def _spawn(self, name: str) -> _Child:
        ready = self._mp.Semaphore(0)
        if name == "receiver":
            target, args = receiver_main, (self.config, self._jobs_ready, ready)
        else:
            target, args = worker_main, (self.config, self._jobs_ready, self._results_ready, ready)
        process = self._mp.Process(target=target, args=args, name=name, daemon=False)
        process.start()
        previous = self._children.get(name)
        child = _Child(name, process, ready, previous.restarts if previous else 0)
        self._children[name] = child
        return child

    def _await_ready(self, children: list[_Child]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for child in children:
            while not child.poll_ready(0.2):
                if not child.process.is_alive():
                    raise ServiceError(f"{child.name} exited during start-up (exit code "
                                       f"{child.process.exitcode}); see the log above")
                if time.monotonic() > deadline:
                    raise ServiceError(f"{child.name} not ready after {START_TIMEOUT_SECONDS:.0f} s")

    def supervise(self) -> None:
        """Restart a child that died (a worker's running job is requeued first). A child that keeps dying
        soon after its start is restarted after 1, 2, 4 ... up to 60 s, so a broken set-up does not spin."""
        now = time.monotonic()
        for name, child in list(self._children.items()):
            if child.process.is_alive() or self._stopping.is_set():
                child.poll_ready()
                continue
            if child.restart_at is None:
                quick = now - child.started < RESTART_RESET_SECONDS
                child.restarts = child.restarts + 1 if quick else 0
                delay = min(RESTART_MAX_DELAY_S, 2.0 ** child.restarts) if child.restarts else 0.0
                child.restart_at = now + delay
                log.error("%s (pid %s) died with exit code %s; restarting it%s", name, child.process.pid,
                          child.process.exitcode, f" in {delay:.0f} s" if delay else "")
                if name != "receiver":
                    self._requeue_jobs_of(child)
            if now >= child.restart_at:
                self._spawn(name)

    def _requeue_jobs_of(self, child: _Child) -> None:
        """Requeue a dead worker's running job; if the database cannot be written now (a full disk), the job
        stays running and is requeued at the next start, and the supervisor carries on."""
        try:
            requeued = requeue_running(self.db, claimed_by=worker_id(self.config, child.process.pid))
            self._audit_requeue(requeued, f"{child.name} died with exit code {child.process.exitcode}")
        except SQLAlchemyError as exc:
            log.error("cannot requeue the jobs of %s (%s); they are requeued at the next start", child.name,
                      type(exc).__name__)

    # -- life cycle -----------------------------------------------------------------------------------
    def _audit_requeue(self, count: int, reason: str) -> None:
        if count and self.audit is not None:
            self.audit.record("job-requeued", MINOR_FAILURE, reference=f"{count} job(s)", count=count,
                              reason=reason)

    def start(self) -> None:
        restrict_umask()
        for warning in self.config.warnings:
            log.warning("configuration: %s", warning)
        self.db = Database(self.config.database.url)
        remove_world_access(private_paths(self.config.storage.dir, self.config.database.url))
        self.audit = AuditTrail.for_config(self.config, self.db)
        self.audit.record("node-start", details=self.config.effective(),
                          reason=f"configuration {self.config.source or 'built-in defaults'}")
        recovered = requeue_running(self.db, claimed_by_prefix=f"{self.name}:")
        if recovered:
            log.warning("recovered %d job(s) left running by the previous run", recovered)
            self._audit_requeue(recovered, "left running by the previous run (recovered at start-up)")
        resent = release_delivery_claims(self.db, self.name)
        if resent:
            log.warning("%d delivery(ies) claimed by the previous run are due again", resent)
        try:
            self._start_http()
            starting = [self._spawn(f"worker-{n}") for n in range(self.config.processing.workers)]
            starting.append(self._spawn("receiver"))
            self._await_ready(starting)
        except BaseException:
            self.stop()
            raise
        dispatcher = Dispatcher(self.config, self.db, self.audit)
        self.scheduler = build_scheduler(self.config, self.db, dispatcher, self.wake_workers, self.audit)
        self.scheduler.start()
        threading.Thread(target=self._forward_results, name="results-watch", daemon=True).start()
        self._started = True
        log.info(health_line(self.config, self.db))

    def _start_http(self) -> None:
        """The status page, probes and metrics; first the metrics directory, which the children inherit."""
        if not self.config.http.enabled:
            return
        self._metrics_dir = multiproc.prepare()
        events.prepare(self.config)
        from dicomnode.web.app import (
            create_app,  # imports prometheus_client: after multiproc.prepare()
        )
        from dicomnode.web.server import HttpServer, HttpServerError

        http = self.config.http
        server = HttpServer(create_app(self, self._metrics_dir), http.bind, http.port,
                            quiet=self.config.logging.level != "DEBUG")
        try:
            server.start()
        except HttpServerError as exc:
            raise ServiceError(str(exc)) from None
        self._http = server

    # -- what the status page asks of the node (dicomnode.web.control.NodeControl) ----------------------
    @property
    def starting(self) -> bool:
        return not self._started

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def process_states(self) -> list[ProcessState]:
        return [ProcessState(c.name, c.process.pid, c.process.is_alive(), c.is_ready, c.restarts)
                for c in list(self._children.values())]

    def wake_workers(self) -> None:
        for _ in range(self.config.processing.workers):
            self._jobs_ready.release()

    def dispatch_soon(self) -> None:
        if self.scheduler is not None:
            run_soon(self.scheduler, DISPATCH_JOB)

    def _forward_results(self) -> None:
        """Dispatch as soon as a worker has recorded new results, instead of at the next interval."""
        while not self._stopping.is_set():
            woken = self._results_ready.acquire(timeout=0.5)
            if woken and self.scheduler is not None and not self._stopping.is_set():
                run_soon(self.scheduler, DISPATCH_JOB)

    def request_stop(self, *_: object) -> None:
        self._stopping.set()

    def wait(self) -> None:
        """Supervise until a stop is requested, then stop."""
        while not self._stopping.wait(SUPERVISE_INTERVAL_S):
            self.supervise()
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        receiver = self._children.get("receiver")
        workers = [c for name, c in self._children.items() if name != "receiver"]
        if receiver is not None:
            receiver.process.terminate()  # SIGTERM: stop accepting, finish the associations in progress
            receiver.process.join(self.grace_seconds)
        for child in workers:
            child.process.terminate()  # SIGTERM: finish the job in hand, then exit
        deadline = time.monotonic() + self.grace_seconds
        for child in workers:
            child.process.join(max(0.0, deadline - time.monotonic()))
        for child in [*workers, *([receiver] if receiver else [])]:
            if child.process.is_alive():
                log.warning("%s did not stop within %.0f s; killing it", child.name, self.grace_seconds)
                child.process.kill()
                child.process.join(10)
                if self.db is not None and child is not receiver:
                    requeued = requeue_running(self.db, claimed_by=worker_id(self.config, child.process.pid),
                                               reason="interrupted: shut down before the job finished")
                    self._audit_requeue(requeued, f"{child.name} did not stop within the grace period")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._http is not None:
            self._http.stop()
        if self._metrics_dir is not None:
            multiproc.remove(self._metrics_dir)
        if self.audit is not None:
            self.audit.record("node-stop")
            self.audit.close()
        if self.db is not None:
            self.db.dispose()
        log.info("KneeAlign node stopped")


def serve(config: NodeConfig, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> int:
    """Run the node until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(config.logging.level)
    service = Service(config, grace_seconds)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    try:
        service.start()
    except ServiceError as exc:
        log.error("cannot start: %s", exc)
        return 1
    service.wait()
    return 0
