"""Files that survive a crash, used by the spool (received instances) and the outputs (result objects): write to
a temporary file, fsync it, rename it into place, fsync the directory; directories created on the way are made
durable too (their parent fsynced). Also which UIDs may become file names, and the free space of a file system."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

PART_SUFFIX = ".part"
# UIDs become file and directory names: accept conformant UIDs (digits and dots) and the odd vendor UID with
# letters, never anything that could escape the spool ("..", "/", "\\", NUL, ...).
_SAFE_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # fullmatch: "$" would accept a trailing LF


def is_safe_uid(uid: str) -> bool:
    """True if ``uid`` can be used as a file or directory name."""
    return bool(_SAFE_UID.fullmatch(uid))


def free_space_mb(path: Path) -> float:
    """Free space in MiB on the file system holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / (1024 * 1024)


def fsync_directory(path: Path) -> None:
    """Make the directory entries of ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(path: Path) -> None:
    """``mkdir -p`` whose new directories survive a crash: each one created is fsynced into its parent."""
    if path.is_dir():
        return
    make_directories(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_directory(path.parent)


def write_durably(data: bytes, path: Path, temp_dir: Path | None = None, mode: int = 0o640) -> bool:
    """Write ``data`` at ``path`` so that after a crash it is either absent (or the previous file) or complete:
    a temporary file in ``temp_dir`` (default: next to ``path``; it must be on the same file system), fsync,
    rename, directory fsync. Returns True if it replaced an existing file. Raises ``OSError`` (e.g. ENOSPC)
    after removing the temporary file."""
    if temp_dir is None:
        make_directories(path.parent)
    temp = (temp_dir or path.parent) / f".{uuid.uuid4().hex}{PART_SUFFIX}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        make_directories(path.parent)
        replaced = path.exists()
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return replaced
