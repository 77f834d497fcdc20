"""Durable storage of received instances in the spool directory.

Layout under ``storage.dir``: ``incoming/`` holds temporary ``*.part`` files being written; finished instances are
renamed atomically into ``instances/<StudyInstanceUID>/<SOPInstanceUID>.dcm``. A file is only reported as stored
after its bytes were fsynced, it was renamed into place and its directory entry was fsynced. Both directories are on
the same file system (under ``storage.dir``), so the rename is atomic.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from dicomnode.config import StorageSection

PART_SUFFIX = ".part"
INSTANCE_SUFFIX = ".dcm"
# UIDs become file and directory names: accept conformant UIDs (digits and dots) and the odd vendor UID with
# letters, never anything that could escape the spool ("..", "/", "\\", NUL, ...).
_SAFE_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # fullmatch: "$" would accept a trailing LF


def is_safe_uid(uid: str) -> bool:
    """True if ``uid`` can be used as a file or directory name in the spool."""
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


@dataclass(frozen=True)
class SpoolWrite:
    """Where an instance was written, and whether it replaced an earlier copy of the same SOP Instance UID."""

    path: Path
    size_bytes: int
    replaced: bool


class Spool:
    """The receiver's view of ``storage.dir``: free-space check, durable writes, clean-up of partial files."""

    def __init__(self, storage: StorageSection, owner: str | None = None) -> None:
        self.storage = storage
        self.owner = owner  # a node's own subdirectory of incoming/: nodes sharing a spool clean only their own

    @property
    def incoming_dir(self) -> Path:
        return self.storage.incoming_dir / self.owner if self.owner else self.storage.incoming_dir

    @property
    def instances_dir(self) -> Path:
        return self.storage.instances_dir

    def prepare(self) -> int:
        """Create the directories and delete ``*.part`` files left by an interrupted write; returns how many.

        A ``.part`` file was never acknowledged to its sender, so the sender still has (and will resend) it.
        """
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.incoming_dir.glob(f"*{PART_SUFFIX}"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def has_room(self, incoming_bytes: int) -> bool:
        """False if writing ``incoming_bytes`` would leave less than ``storage.min_free_mb`` free."""
        return free_space_mb(self.storage.dir) - incoming_bytes / (1024 * 1024) >= self.storage.min_free_mb

    def instance_path(self, study_uid: str, sop_instance_uid: str) -> Path:
        """The final path of an instance; both UIDs must pass :func:`is_safe_uid`."""
        if not (is_safe_uid(study_uid) and is_safe_uid(sop_instance_uid)):
            raise ValueError("UID not usable as a file name")
        return self.instances_dir / study_uid / f"{sop_instance_uid}{INSTANCE_SUFFIX}"

    def write(self, data: bytes, study_uid: str, sop_instance_uid: str) -> SpoolWrite:
        """Write ``data`` durably to the instance's final path (temp file, fsync, atomic rename, dir fsync).

        Raises ``OSError`` (e.g. ENOSPC) after removing the temporary file; nothing is left half-written.
        """
        final = self.instance_path(study_uid, sop_instance_uid)
        temp = self.incoming_dir / f"{uuid.uuid4().hex}{PART_SUFFIX}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._ensure_study_dir(final.parent)
            replaced = final.exists()
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_directory(final.parent)
        return SpoolWrite(path=final, size_bytes=len(data), replaced=replaced)

    def _ensure_study_dir(self, study_dir: Path) -> None:
        try:
            study_dir.mkdir()
        except FileExistsError:
            return
        fsync_directory(study_dir.parent)  # the new study directory's entry must survive a crash too

    def discard(self, written: SpoolWrite) -> None:
        """Undo a write whose instance could not be queued; an earlier acknowledged copy is kept."""
        if not written.replaced:
            written.path.unlink(missing_ok=True)
            try:
                written.path.parent.rmdir()  # the study directory, if this write created it
            except OSError:
                pass
