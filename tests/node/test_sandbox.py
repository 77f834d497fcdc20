"""The worker's sandbox as a real child process: answers come back, and a task that runs over its time limit,
allocates past its memory limit, crashes or panics costs one bounded attempt, with a curated reason, and the next
task gets a fresh child."""

from __future__ import annotations

import time

import pytest

from dicomnode.config import NodeConfig
from dicomnode.pipeline.failures import LIMIT, PERMANENT, JobFailure
from dicomnode.runtime.sandbox import Sandbox, SandboxLimits, SandboxStartError
from dicomnode.pipeline.task import Task

TARGETS = {"loader": "tests.node.sandbox_targets:load", "runner": "tests.node.sandbox_targets:run"}


def _task(action: str) -> Task:
    return Task(path=action, study_instance_uid="1.2", sop_instance_uid="1.2.3", kinds=("sr",), outputs_dir="/none",
                max_decoded_bytes=1)


@pytest.fixture(scope="module")
def sandbox():  # one for the module: the tests that cost it a child check that the next task gets a fresh one
    box = Sandbox(NodeConfig(), SandboxLimits(time_seconds=2.0, memory_mb=512), **TARGETS)
    box.start()
    try:
        yield box
    finally:
        box.close()


def _failure(box: Sandbox, action: str):
    with pytest.raises(JobFailure) as caught:
        box.run(_task(action))
    return caught.value.failure


def test_a_task_runs_in_the_child_and_answers(sandbox):
    import os

    result = sandbox.run(_task("pid"))
    assert result.status == "ok" and int(result.reason) == sandbox.pid != os.getpid()
    assert sandbox.memory_cap_bytes is not None


def test_a_task_over_its_time_limit_is_killed_and_the_next_gets_a_fresh_child(sandbox):
    first = sandbox.pid
    started = time.monotonic()
    failure = _failure(sandbox, "sleep")
    assert time.monotonic() - started < 10
    assert (failure.category, failure.kind) == (LIMIT, "TimeLimitExceeded")
    assert "processing.job_time_limit_seconds" in failure.message
    starts = sandbox.starts
    assert int(sandbox.run(_task("pid")).reason) != first and sandbox.starts == starts + 1


def test_a_task_over_its_memory_limit_fails_with_a_limit_and_the_child_is_replaced(sandbox):
    first = sandbox.pid
    failure = _failure(sandbox, "allocate")
    assert (failure.category, failure.kind) == (LIMIT, "MemoryError")
    assert int(sandbox.run(_task("pid")).reason) != first


def test_a_crash_is_a_limit_failure_naming_the_signal(sandbox):
    failure = _failure(sandbox, "segfault")
    assert (failure.category, failure.kind) == (LIMIT, "SandboxCrashed") and "SIGSEGV" in failure.message
    assert sandbox.run(_task("ok")).reason == "ok"


def test_a_native_decoder_panic_is_caught_as_a_permanent_failure(sandbox):
    first = sandbox.pid
    failure = _failure(sandbox, "panic")
    assert (failure.category, failure.kind) == (PERMANENT, "PanicException")
    assert "index out of bounds" not in failure.text  # the panic's own text is not kept
    assert sandbox.pid == first, "a caught panic does not cost the child"


def test_a_sandbox_that_cannot_load_the_model_says_why(monkeypatch):
    monkeypatch.setenv("SANDBOX_TARGET_FAIL_LOAD", "1")
    box = Sandbox(NodeConfig(), SandboxLimits(2.0, 512), **TARGETS)
    with pytest.raises(SandboxStartError, match="weights file not found"):
        box.start()
    box.close()
