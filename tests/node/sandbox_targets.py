"""Stand-ins for the model and the pipeline, run inside a real sandbox child by tests/node/test_sandbox.py: each
task's ``path`` says what to do (answer, sleep, allocate, crash, panic)."""

from __future__ import annotations

import ctypes
import os
import time

from dicomnode.pipeline.task import TaskResult


class PanicException(BaseException):
    """Named like pyo3's: a native decoder's panic, which ``except Exception`` does not catch."""


def load(config) -> object:
    if os.environ.get("SANDBOX_TARGET_FAIL_LOAD"):
        raise ValueError("weights file not found: /nowhere.safetensors")
    return object()


def run(task, predictor) -> TaskResult:
    from dicomnode.pipeline.failures import JobFailure, classify

    action = task.path
    try:
        if action == "sleep":
            time.sleep(3600)
        elif action == "allocate":
            blocks = [bytearray(256 * 1024 * 1024) for _ in range(64)]  # 16 GiB, far over any test limit
            del blocks
        elif action == "segfault":
            ctypes.string_at(0)
        elif action == "panic":
            raise PanicException("index out of bounds: the len is 32 but the index is 32")
        elif action == "pid":
            return TaskResult("ok", str(os.getpid()))
    except BaseException as exc:  # noqa: BLE001 - as run_task does
        raise JobFailure(classify(exc, "analyse")) from None
    return TaskResult("ok", action)
