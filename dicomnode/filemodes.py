"""Files the node creates are not world-readable: received images and results carry patient data.

Every process of the node (and every ``dicomnode`` command) runs with a umask of at least ``0o027``: new files
are at most ``rw-r-----`` and directories ``rwxr-x---`` (owner, then the node's group, nobody else). A stricter
umask set by the admin (``0o077``) is kept. At start-up the service also takes world access away from what an
older version or a careless copy left behind: ``storage.dir`` and its top-level directories, and the SQLite
database file with its ``-wal`` and ``-shm`` files.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
UMASK = 0o027


def restrict_umask(mask: int = UMASK) -> int:
    """Add ``mask`` to the process umask (never loosening it); returns the new umask."""
    current = os.umask(0)
    new = current | mask
    os.umask(new)
    return new


def sqlite_files(url: str) -> list[Path]:
    """The files of a file-backed SQLite database URL (none for other databases)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return []
    base = Path(database)
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")]


def remove_world_access(paths: list[Path]) -> list[Path]:
    """Clear the "other" permission bits of each existing path we own; returns the paths that changed."""
    changed = []
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or not info.st_mode & 0o007:
            continue
        path.chmod(stat.S_IMODE(info.st_mode) & ~0o007)
        changed.append(path)
    if changed:
        log.warning("removed world access from %s", ", ".join(str(p) for p in changed))
    return changed


def private_paths(storage_dir: Path, database_url: str) -> list[Path]:
    """What must not be world-accessible: the spool and its top-level directories, the SQLite files."""
    spool = [storage_dir, *(storage_dir / name for name in ("incoming", "instances", "outputs"))]
    return [*spool, *sqlite_files(database_url)]
