"""The worker's guards, one by one: failure classification, header checks against size and memory, the
deflate bound, the disk gate and deferral, and file modes."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dicomnode.db import Database
from dicomnode.db.intake import record_instance
from dicomnode.db.jobs import list_jobs
from dicomnode.filemodes import private_paths, remove_world_access, restrict_umask
from dicomnode.pipeline.failures import (
    DEFERRED,
    LIMIT,
    PERMANENT,
    TRANSIENT,
    DiskReserveReached,
    InvalidImage,
    JobFailure,
    classify,
)
from dicomnode.pipeline.image_checks import ImageBounds, check_image, read_instance
from dicomnode.runtime.runner import JobRunner
from dicomnode.runtime.worker import work_loop
from tests.hostile import builders
from tests.node.nodehelpers import arrival, radiograph_dataset, write

MiB = 1024 * 1024


class PanicException(BaseException):
    """Named like pyo3's."""


@pytest.mark.parametrize("exc, stage, category, words", [
    (InvalidImage("Rows or Columns missing or not positive"), "check", PERMANENT, "Rows or Columns"),
    (MemoryError(), "analyse", LIMIT, "ran out of memory"),
    (RecursionError("maximum recursion depth"), "read", PERMANENT, "nested too deeply"),
    (PanicException("index out of bounds: 32"), "analyse", PERMANENT, "native decoder panicked"),
    (OSError(errno.ENOSPC, "No space left on device"), "write", DEFERRED, "no space left"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "write", DEFERRED, "no space left"),
    (OSError(errno.EIO, "I/O error"), "write", TRANSIENT, "errno 5"),
    (FileNotFoundError(errno.ENOENT, "gone"), "read", PERMANENT, "missing from the spool"),
    (OperationalError("INSERT", {}, Exception("database is locked")), "record", TRANSIENT, "recorded"),
    (OperationalError("COMMIT", {}, Exception("database or disk is full")), "record", DEFERRED, "disk is full"),
    (ValueError("'Smith^John' is not a valid thing"), "build", PERMANENT, "cannot be built"),
    (DiskReserveReached("free space would fall below storage.min_free_mb"), "write", DEFERRED, "min_free_mb"),
])
def test_failures_are_classified_with_curated_words(exc, stage, category, words):
    failure = classify(exc, stage)
    assert failure.category == category and words in failure.text
    assert failure.text.startswith(f"{category}: {type(exc).__name__}: ")
    assert "Smith" not in failure.text and "index out of bounds" not in failure.text


def test_a_stored_reason_is_one_printable_line():
    failure = classify(InvalidImage("bad\r\nFORGED 2026 ERROR line\x1b[31m"), "check")
    assert "\n" not in failure.text and "\r" not in failure.text and "\x1b" not in failure.text
    assert "\\r\\n" in failure.text


def test_an_image_too_large_for_the_job_memory_is_refused_before_decoding():
    ds = radiograph_dataset()
    ds.Rows, ds.Columns = 4096, 4096  # 32 MiB decoded: within 128 MiB, but 16 x 32 MiB > 256 MiB
    with pytest.raises(InvalidImage, match="more than processing.job_memory_mb"):
        check_image(ds, ImageBounds(128 * MiB, memory_bytes=256 * MiB))
    check_image(radiograph_dataset(), ImageBounds(128 * MiB, memory_bytes=256 * MiB))
    with pytest.raises(InvalidImage, match="more than processing.max_decoded_mb"):
        check_image(ds, ImageBounds(16 * MiB))


def test_a_deflate_bomb_is_given_up_on_after_a_bounded_inflation(tmp_path):
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(builders.deflate_bomb(radiograph_dataset(), 64 * MiB))
    assert bomb.stat().st_size < MiB
    with pytest.raises(InvalidImage, match="inflates to more than 16 MiB"):
        read_instance(bomb, ImageBounds(1, memory_bytes=32 * MiB))  # half of 32 MiB
    assert read_instance(bomb, ImageBounds(128 * MiB)).Rows == 256  # within the bounds it is read


def _queue_one(db: Database, config, ds) -> None:
    path = write(ds, Path(config.storage.dir) / "instances" / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm")
    record_instance(db, arrival(study=ds.StudyInstanceUID, sop=ds.SOPInstanceUID, path=str(path)), "instance", 3)


def _loop_briefly(config, db, execute, seconds: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=work_loop, args=(JobRunner(config, db, execute), db, "host:1", 1.0, stop))
    thread.start()
    stop.wait(seconds)
    stop.set()
    thread.join(30)


@pytest.fixture
def config(tmp_path):
    from dicomnode.config import load_config
    from tests.node.nodeproc import node_config

    return load_config(node_config(tmp_path, 11112, 11113, None), env={})


def test_below_the_disk_reserve_no_job_is_claimed(config, tmp_path, caplog):
    db = Database(config.database.url)
    try:
        _queue_one(db, config, radiograph_dataset())
        config.storage.min_free_mb = 10**9  # a reserve no disk has
        calls = []
        _loop_briefly(config, db, lambda task: calls.append(task), 1.5)
        assert calls == [] and [j.state for j in list_jobs(db)] == ["queued"]
        assert "processing paused" in caplog.text
    finally:
        db.dispose()


def test_a_job_that_meets_a_full_disk_waits_without_using_attempts(config):
    db = Database(config.database.url)
    try:
        _queue_one(db, config, radiograph_dataset())

        def full(task):
            raise JobFailure(classify(OSError(errno.ENOSPC, "No space left on device"), "write"))

        _loop_briefly(config, db, full, 4.0)  # retry_base_seconds is 1 in this configuration: several deferrals
        (job,) = list_jobs(db)
        assert job.state in ("queued", "running") and job.attempts <= 1
        assert job.last_error.startswith("deferred: OSError")
    finally:
        db.dispose()


def test_files_are_created_without_world_access(tmp_path):
    previous = os.umask(0o002)
    try:
        assert restrict_umask() == 0o027
        (tmp_path / "new").write_text("x")
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640
        os.umask(0o077)
        assert restrict_umask() == 0o077, "a stricter umask is kept"
    finally:
        os.umask(previous)
    spool = tmp_path / "spool"
    (spool / "instances").mkdir(parents=True)
    database = tmp_path / "node.sqlite"
    database.write_text("x")
    for path in (spool, spool / "instances", database):
        path.chmod(0o777 if path.is_dir() else 0o666)
    changed = remove_world_access(private_paths(spool, f"sqlite:///{database}"))
    assert set(changed) == {spool, spool / "instances", database}
    assert all(not p.stat().st_mode & 0o007 for p in changed)
