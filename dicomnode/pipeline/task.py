"""One received instance through the image pipeline, as a worker's sandbox runs it: read the file within bounds,
select, check its attributes, predict, build the result objects and write them durably. No database, no network:
the worker records what comes back (see :mod:`dicomnode.runtime.runner`).

Every failure leaves as a :class:`~dicomnode.pipeline.failures.JobFailure` whose failure says in which stage it
happened, in curated words (see :mod:`dicomnode.pipeline.failures`). Results are not written below the disk reserve
(``storage.min_free_mb``): the job is deferred instead, and no file is half-written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnode.db.results import OutputFile
from dicomnode.durable import free_space_mb, is_safe_uid, write_durably
from dicomnode.pipeline.analysis import (
    STATUS_SKIPPED,
    Predictor,
    build,
    predict,
)
from dicomnode.pipeline.failures import DiskReserveReached, JobFailure, classify
from dicomnode.pipeline.image_checks import (
    ImageBounds,
    check_image,
    drop_empty_optional,
    read_instance,
)
from dicomnode.pipeline.output_files import encode, spool_output_path
from dicomnode.vocabulary import kind_of
from model.selection import skip_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """What the sandbox needs to process one instance. ``flat`` puts results in ``outputs_dir`` as
    ``<SOPInstanceUID>.<kind>.dcm`` (``dicomnode process``); otherwise in the spool layout under it."""

    path: str
    study_instance_uid: str
    sop_instance_uid: str
    kinds: tuple[str, ...]
    outputs_dir: str
    max_decoded_bytes: int
    min_free_mb: float = 0.0
    flat: bool = False
    memory_bytes: int | None = None  # the sandbox's per-job memory (None: no limit)


@dataclass
class TaskResult:
    """Skipped (with the reason), or processed: the result's status, its JSON summary and its written files."""

    status: str
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[OutputFile] = field(default_factory=list)


def output_path(task: Task, kind: str) -> Path:
    if task.flat:
        if not is_safe_uid(task.sop_instance_uid):
            raise ValueError("SOP Instance UID not usable as a file name")
        return Path(task.outputs_dir) / f"{task.sop_instance_uid}.{kind}.dcm"
    return spool_output_path(Path(task.outputs_dir), task.study_instance_uid, task.sop_instance_uid, kind)


def run_task(task: Task, predictor: Predictor) -> TaskResult:
    """Process ``task``; raises JobFailure (never anything else but KeyboardInterrupt/SystemExit)."""
    stage = "read"
    try:
        bounds = ImageBounds(task.max_decoded_bytes, task.memory_bytes)
        ds = read_instance(task.path, bounds)
        stage = "analyse"
        analysis = predict_checked(ds, predictor, bounds)
        if analysis.status == STATUS_SKIPPED:
            return TaskResult(STATUS_SKIPPED, analysis.reason)
        stage = "build"
        build(analysis, ds, task.kinds)
        summary = json.loads(json.dumps(analysis.summary(), default=float))
        stage = "write"
        files = [write_output(task, out) for out in analysis.outputs]
        return TaskResult(analysis.status, None, summary, files)
    except (KeyboardInterrupt, SystemExit, JobFailure):
        raise
    except BaseException as exc:  # noqa: BLE001 - incl. pyo3's PanicException (a BaseException)
        failure = classify(exc, stage)
        if log.isEnabledFor(logging.DEBUG):  # a traceback is formatted only when it is logged, and bounded
            log.debug("%s failed at %s", task.sop_instance_uid, stage, exc_info=_bounded(exc))
        raise JobFailure(failure) from None


def predict_checked(ds, predictor: Predictor, bounds: ImageBounds):
    """Select; then, for an image the node processes, check its attributes before anything is decoded."""
    if skip_reason(ds) is None:
        check_image(ds, bounds)
        drop_empty_optional(ds)
    return predict(ds, predictor)


def write_output(task: Task, ds) -> OutputFile:
    """Encode, check the disk reserve, write durably (DiskReserveReached when it would go below)."""
    data = encode(ds)
    kind = kind_of(ds)
    path = output_path(task, kind)
    if task.min_free_mb and free_space_mb(path.parent) - len(data) / (1024 * 1024) < task.min_free_mb:
        raise DiskReserveReached("free space would fall below storage.min_free_mb: processing waits for space")
    write_durably(data, path)
    return OutputFile(kind, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(path))


def _bounded(exc: BaseException) -> BaseException:
    """``exc`` with its traceback cut to the innermost frames (a RecursionError's has a thousand)."""
    tb = exc.__traceback__
    depth = 0
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    tb = exc.__traceback__
    for _ in range(max(0, depth - 30)):
        tb = tb.tb_next
    return exc.with_traceback(tb)
