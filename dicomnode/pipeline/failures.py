"""What went wrong with a job, in words fit for a log line and the job table, and what happens next.

A :class:`Failure` has a category that decides the job's fate, the exception's type name, and a curated
message written by this code, never the exception's own text (which can quote attribute values: a patient name,
a 100,000-value Window Center, a CR/LF that forges log lines):

========== ================================================================== ===========================
category   what                                                               then
========== ================================================================== ===========================
permanent  the image can never succeed: unparseable or absurd attributes,      dead at once, never retried
           undecodable pixel data, a native decoder's panic, an image over
           the size bounds, deep nesting
limit      the job's sandbox ran over its time or memory limit, or died        retried once, then dead
transient  disk, database or destination errors                                retried with backoff
deferred   free space below ``storage.min_free_mb``, or ENOSPC/EDQUOT           back to the queue, no
                                                                               attempt used
========== ================================================================== ===========================

Stored and logged as ``"<category>: <type>: <message>"`` (see :meth:`Failure.text`), escaped to one printable
line.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from dicomnode.safetext import escape

PERMANENT = "permanent"
LIMIT = "limit"
TRANSIENT = "transient"
DEFERRED = "deferred"
CATEGORIES = (PERMANENT, LIMIT, TRANSIENT, DEFERRED)
MAX_TEXT = 500

# Where in the pipeline an exception happened, and what that means in words (for exceptions of other code).
STAGE_MESSAGES = {
    "read": "the received file cannot be parsed as DICOM",
    "check": "the image's attributes cannot be checked",
    "analyse": "the image cannot be analysed",
    "build": "the result objects cannot be built from this image's attributes",
    "write": "the result files cannot be written",
    "record": "the result cannot be recorded in the database",
}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class CuratedError(Exception):
    """An error raised by the node's own code whose message is safe to store and log (names attributes, never
    quotes their values). Subclasses set the category."""

    category = PERMANENT


class InvalidImage(CuratedError, ValueError):
    """The image's attributes are absurd, unparseable or over a configured bound: it can never succeed."""


class DiskReserveReached(CuratedError):
    """Writing the results would take free space below ``storage.min_free_mb``: wait for space, then retry."""

    category = DEFERRED


@dataclass(frozen=True)
class Failure:
    """One failed attempt: category (see the module docstring), exception type name, curated message."""

    category: str
    kind: str
    message: str

    @property
    def text(self) -> str:
        """``"<category>: <type>: <message>"``, one printable line, at most ``MAX_TEXT`` characters."""
        return escape(f"{self.category}: {self.kind}: {self.message}", limit=MAX_TEXT)

    @property
    def permanent(self) -> bool:
        return self.category == PERMANENT


class JobFailure(Exception):
    """Carries a :class:`Failure` from the sandbox or the runner to the worker loop."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.text)
        self.failure = failure


def _is_panic(exc: BaseException) -> bool:
    # pyo3's PanicException (Rust decoders such as pylibjpeg-rle) derives from BaseException, not Exception.
    return type(exc).__name__ == "PanicException"


def classify(exc: BaseException, stage: str) -> Failure:
    """The :class:`Failure` for ``exc`` raised during ``stage`` (a key of ``STAGE_MESSAGES``)."""
    kind = type(exc).__name__
    if isinstance(exc, CuratedError):
        return Failure(exc.category, kind, escape(str(exc)))
    if isinstance(exc, MemoryError):
        return Failure(LIMIT, kind, "the job ran out of memory (processing.job_memory_mb)")
    if isinstance(exc, RecursionError):
        return Failure(PERMANENT, kind, "the dataset is nested too deeply to be read")
    if _is_panic(exc):
        return Failure(PERMANENT, kind, f"a native decoder panicked: {STAGE_MESSAGES.get(stage, stage)}")
    if isinstance(exc, OSError):
        if exc.errno in _NO_SPACE:
            return Failure(DEFERRED, kind, "no space left on the device while writing results")
        if isinstance(exc, FileNotFoundError) and stage == "read":
            return Failure(PERMANENT, kind, "the received file is missing from the spool")
        return Failure(TRANSIENT, kind, f"{STAGE_MESSAGES.get(stage, stage)} (errno {exc.errno})")
    if _database_full(exc):
        return Failure(DEFERRED, kind, "the database's disk is full while recording the result")
    if stage == "record":
        return Failure(TRANSIENT, kind, STAGE_MESSAGES["record"])
    # Anything else raised while reading, checking, analysing or building is deterministic for this file and
    # this model: retrying cannot help. The model's and outputs' own messages are curated (see model.preprocess
    # UnsupportedImage and dicomnode.outputs.OutputError), the rest are replaced by the stage's words.
    if _is_curated_library_error(exc):
        return Failure(PERMANENT, kind, escape(str(exc)))
    return Failure(PERMANENT, kind, STAGE_MESSAGES.get(stage, stage))


def _database_full(exc: BaseException) -> bool:
    """A database write refused for lack of space: SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's
    disk_full (SQLSTATE 53100), or an ENOSPC underneath (SQLAlchemy keeps the driver's error in ``orig``)."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == "53100" or getattr(orig, "errno", None) in _NO_SPACE:
        return True
    return "database or disk is full" in str(orig)


def _is_curated_library_error(exc: BaseException) -> bool:
    """Errors of this project whose messages are written to be stored (no attribute values)."""
    from dicomnode.outputs.common import OutputError
    from model.preprocess import UnsupportedImage

    return isinstance(exc, (OutputError, UnsupportedImage))
