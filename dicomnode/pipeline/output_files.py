"""Where result objects live in the spool and how they are encoded (written with ``dicomnode.durable``). Layout:
``<storage.dir>/outputs/<StudyInstanceUID>/<source SOP UID>/<kind>.dcm``, so a re-run after a crash overwrites its
own files instead of adding new ones."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom

from dicomnode.durable import is_safe_uid

OUTPUTS_DIRNAME = "outputs"


def encode(ds: pydicom.Dataset) -> bytes:
    """The Part 10 file bytes of ``ds`` (preamble, meta header, dataset)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def spool_output_path(storage_dir: Path, study_uid: str, source_sop_uid: str, kind: str) -> Path:
    """Where the ``kind`` output of one source instance lives in the spool."""
    if not (is_safe_uid(study_uid) and is_safe_uid(source_sop_uid)):
        raise ValueError("UID not usable as a file name")
    return storage_dir / OUTPUTS_DIRNAME / study_uid / source_sop_uid / f"{kind}.dcm"
