"""Writing built result objects durably: encode, write a temporary file next to the target, fsync, rename,
fsync the directory. Spool layout: ``<storage.dir>/outputs/<StudyInstanceUID>/<source SOP UID>/<kind>.dcm``,
so a re-run after a crash overwrites its own files instead of adding new ones."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pydicom

from dicomnode.receive.spool import fsync_directory, is_safe_uid

OUTPUTS_DIRNAME = "outputs"


def encode(ds: pydicom.Dataset) -> bytes:
    """The Part 10 file bytes of ``ds`` (preamble, meta header, dataset)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_durably(ds: pydicom.Dataset, path: Path) -> Path:
    """Write ``ds`` as a Part 10 file at ``path`` so that it is either absent or complete after a crash."""
    return write_bytes_durably(encode(ds), path)


def write_bytes_durably(data: bytes, path: Path) -> Path:
    """Write ``data`` at ``path``: temporary file, fsync, rename, directory fsync (absent or complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def spool_output_path(storage_dir: Path, study_uid: str, source_sop_uid: str, kind: str) -> Path:
    """Where the ``kind`` output of one source instance lives in the spool."""
    if not (is_safe_uid(study_uid) and is_safe_uid(source_sop_uid)):
        raise ValueError("UID not usable as a file name")
    return storage_dir / OUTPUTS_DIRNAME / study_uid / source_sop_uid / f"{kind}.dcm"
