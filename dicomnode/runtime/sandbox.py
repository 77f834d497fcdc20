"""A worker's sandbox: a child process that loads the model once and runs one task at a time within limits.

Why a child: a hostile image can do what no ``try`` survives (a native decoder's segfault, a Rust panic, an
allocation of many GB, a loop). The worker process only sends the task and waits; the child runs it under
``setrlimit(RLIMIT_AS)`` (the address space the loaded model uses, plus ``processing.job_memory_mb``), and the
worker kills it when ``processing.job_time_limit_seconds`` pass without an answer. A child that died, was killed
or ran out of memory is replaced by a fresh one (a few seconds: Python, PyTorch and the weights load again, and
the stages are traced) before the next task, so one bad image never poisons the next.

What comes back is a :class:`~dicomnode.pipeline.task.TaskResult`, or a
:class:`~dicomnode.pipeline.failures.Failure` (never an exception object: its text could quote patient data
and its traceback could be megabytes). Time and memory limits and crashes come back as ``limit`` failures.

The child is started with ``spawn`` (a fork of a process that has run PyTorch hangs in OpenMP), dies with its
worker (``PR_SET_PDEATHSIG``), and ignores SIGINT and SIGTERM: the worker decides when it stops. What native
libraries print on its standard error (a Rust decoder's panic message, a C library's complaint) is read back
line by line and logged escaped at DEBUG, so that it can neither break the log's format nor carry values into it
above DEBUG.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from dicomnode.pipeline.failures import LIMIT, Failure, JobFailure, classify
from dicomnode.pipeline.task import Task, TaskResult
from dicomnode.safetext import escape

log = logging.getLogger(__name__)
MiB = 1024 * 1024
START_TIMEOUT_SECONDS = 300.0  # importing PyTorch and loading the weights on a busy CPU
STOP_TIMEOUT_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


class SandboxStartError(RuntimeError):
    """The sandbox could not load the model (missing or mismatched weights, no CUDA...); the message says why."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-task limits: wall-clock seconds, and MiB of address space on top of the loaded model."""

    time_seconds: float
    memory_mb: int


# What the child runs, as "module:function" names (importable in a spawned process): the predictor loader
# (called with the configuration) and the task runner (called with a task and the predictor).
LOADER = "dicomnode.runtime.worker:load_predictor"
RUNNER = "dicomnode.pipeline.task:run_task"


def _resolve(name: str):
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker's own watch (below) still ends it
        pass


def capture_stderr() -> object:
    """Route file descriptor 2 through a pipe whose lines are logged (escaped, DEBUG); returns a stream on the
    original standard error for the log handler itself."""
    original = os.fdopen(os.dup(2), "w", buffering=1)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    native = logging.getLogger("dicomnode.runtime.sandbox.stderr")

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                native.debug("native output: %s", escape(line.decode("utf-8", "replace").rstrip(), limit=500))

    threading.Thread(target=pump, name="stderr-pump", daemon=True).start()
    return original


def address_space_bytes() -> int:
    """This process's virtual memory size (what RLIMIT_AS limits)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit_memory(extra_mb: int) -> int:
    """Cap the address space at its current size plus ``extra_mb``; returns the cap in bytes."""
    cap = address_space_bytes() + extra_mb * MiB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


def child_main(conn: Connection, config: Any, limits: SandboxLimits, loader: str = LOADER,
               runner: str = RUNNER) -> None:
    """The sandbox process: load the model, warm it up, cap memory, then answer tasks until the pipe closes."""
    from dicomnode.runtime.logsetup import configure_logging
    from dicomnode.runtime.worker import limit_threads

    _die_with_parent()
    os.environ["RUST_BACKTRACE"] = "0"  # a Rust decoder's panic prints one line to stderr, not a backtrace
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(config.logging.level, stream=capture_stderr())
    limit_threads(config.processing.workers)
    run_task = _resolve(runner)
    try:
        predictor = _resolve(loader)(config)
        _warm_up(predictor)
    except (OSError, ValueError, RuntimeError) as exc:  # WeightsError is a ValueError; no CUDA is a RuntimeError
        conn.send(("error", f"cannot load the model (model.weights = {config.model.weights or 'shipped'}): "
                            f"{exc}"))
        return
    cap = _limit_memory(limits.memory_mb)
    conn.send(("ready", cap))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the worker closed the pipe (or died)
        try:
            conn.send(("result", run_task(task, predictor)))
        except JobFailure as failed:
            conn.send(("failure", failed.failure))
            if failed.failure.category == LIMIT:
                return  # after a MemoryError the heap may be in any state: let the worker start a fresh child
        except Exception as exc:  # noqa: BLE001 - a runner that let something through: still a curated failure
            conn.send(("failure", classify(exc, "analyse")))


def _warm_up(predictor: Any) -> None:
    """One prediction on a blank image, so that the thread pools and lazy allocations exist before memory is
    capped (the cap is measured from here)."""
    import numpy as np

    predict_image = getattr(predictor, "predict_image", None)
    if predict_image is None:
        return
    try:
        predict_image(np.zeros((256, 256), dtype=np.float32))
    except ValueError:  # UnsupportedImage: a blank image has no knee, as expected
        pass


class Sandbox:
    """The worker's handle on its sandbox child: ``start()``, ``run(task)`` (TaskResult or JobFailure), ``close()``."""

    def __init__(self, config: Any, limits: SandboxLimits, loader: str = LOADER, runner: str = RUNNER) -> None:
        self.config = config
        self.limits = limits
        self._targets = (loader, runner)
        self._mp = multiprocessing.get_context("spawn")
        self._process = None
        self._conn: Connection | None = None
        self.starts = 0
        self.memory_cap_bytes: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start a child and wait until its model is loaded; SandboxStartError if it cannot load it."""
        parent, child = self._mp.Pipe()
        process = self._mp.Process(target=child_main, args=(child, self.config, self.limits, *self._targets),
                                   name=f"{multiprocessing.current_process().name}-sandbox", daemon=True)
        started = time.monotonic()
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.starts += 1
        if not parent.poll(START_TIMEOUT_SECONDS):
            self._kill()
            raise SandboxStartError(f"the sandbox did not load the model within {START_TIMEOUT_SECONDS:.0f} s")
        try:
            kind, value = parent.recv()
        except (EOFError, OSError):
            self._kill()
            raise SandboxStartError("the sandbox died while loading the model") from None
        if kind != "ready":
            self._kill()
            raise SandboxStartError(str(value))
        self.memory_cap_bytes = int(value)
        log.debug("sandbox pid %d ready in %.1f s (address space capped at %d MiB)", process.pid,
                  time.monotonic() - started, self.memory_cap_bytes // MiB)

    def run(self, task: Task) -> TaskResult:
        """Run ``task`` in the child within the limits; raises JobFailure on any failure."""
        if self._process is None or not self._process.is_alive():
            self.start()
        assert self._conn is not None
        try:
            self._conn.send(task)
        except (OSError, EOFError):
            raise JobFailure(self._crashed()) from None
        if not self._conn.poll(self.limits.time_seconds):
            self._kill()
            raise JobFailure(Failure(LIMIT, "TimeLimitExceeded", f"the job took longer than "
                                     f"processing.job_time_limit_seconds ({self.limits.time_seconds:g} s)"))
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            raise JobFailure(self._crashed()) from None
        if kind == "failure":
            if value.category == LIMIT:
                self._reap()  # the child exits after a limit failure; the next task starts a fresh one
            raise JobFailure(value)
        return value

    def _crashed(self) -> Failure:
        code = self._reap()
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            if -code == signal.SIGKILL:
                message = f"the job's process was killed ({name}; out of memory?)"
            else:
                message = f"the job's process died of {name}"
        else:
            message = f"the job's process exited unexpectedly (exit code {code})"
        return Failure(LIMIT, "SandboxCrashed", message)

    def _reap(self) -> int | None:
        process = self._process
        if process is None:
            return None
        process.join(STOP_TIMEOUT_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_SECONDS)
        self._close_conn()
        self._process = None
        return process.exitcode

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._reap()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Stop the child: close its pipe (it exits), kill it if it does not."""
        if self._process is None:
            return
        self._close_conn()
        self._process.join(STOP_TIMEOUT_SECONDS)
        self._kill()
