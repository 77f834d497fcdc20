"""Durable storage of received instances in the spool directory.

Layout under ``storage.dir``: ``incoming/`` holds temporary ``*.part`` files being written; finished instances are
renamed atomically into ``instances/<StudyInstanceUID>/<SOPInstanceUID>.dcm``. A file is only reported as stored
after its bytes were fsynced, it was renamed into place and its directory entry was fsynced. Both directories are on
the same file system (under ``storage.dir``), so the rename is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dicomnode.config import StorageSection
from dicomnode.durable import PART_SUFFIX, free_space_mb, is_safe_uid, write_durably

__all__ = ["PART_SUFFIX", "Spool", "SpoolWrite", "free_space_mb", "is_safe_uid"]

INSTANCE_SUFFIX = ".dcm"


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
        """Write ``data`` durably to the instance's final path (see ``dicomnode.durable``; the temporary file in
        ``incoming_dir``). Raises ``OSError`` (e.g. ENOSPC); nothing is left half-written."""
        final = self.instance_path(study_uid, sop_instance_uid)
        replaced = write_durably(data, final, temp_dir=self.incoming_dir)
        return SpoolWrite(path=final, size_bytes=len(data), replaced=replaced)

    def discard(self, written: SpoolWrite) -> None:
        """Undo a write whose instance could not be queued; an earlier acknowledged copy is kept."""
        if not written.replaced:
            written.path.unlink(missing_ok=True)
            try:
                written.path.parent.rmdir()  # the study directory, if this write created it
            except OSError:
                pass
