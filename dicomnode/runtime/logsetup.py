"""One log format for the node's processes (service, receiver, workers, command line), on stderr, and the levels
that keep libraries from logging attribute values.

Every record is one line: control characters in the message (a CR/LF inside an AE title or UID that a peer
sent, quoted by the node or by a library) are escaped by :class:`OneLineFormatter`, so no log line can be
forged. A traceback, when one is logged, follows on its own indented lines.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from dicomnode.safetext import escape

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """Formats the message with its control characters escaped; tracebacks indented below it."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # noqa: N802, ANN001 - logging's name and signature
        return "\n".join("    | " + escape(line) for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return "\n".join("    | " + escape(line) for line in stack_info.splitlines())


LIBRARIES_AT_WARNING = ("pynetdicom", "apscheduler", "sqlalchemy", "alembic", "PIL", "matplotlib")


def library_levels(level: str = "INFO") -> dict[str, int]:
    """The level of each third-party logger when the node logs at ``level`` (everything at DEBUG when DEBUG).

    - Library warnings can quote attribute values (highdicom's person-name check quotes the patient's name);
      pydicom logs every invalid value it reads at WARNING, quoting it ("Invalid value for VR DA: '1961-02-03'",
      "Unknown encoding 'X'"): those loggers show only errors.
    - pydicom's pixel decoders log each failed attempt at ERROR with a full traceback; the node records the
      failure itself (curated, one line), so those are silent.
    - The others (network, scheduler, database and its migrations, drawing) stay at WARNING.
    """
    if level == "DEBUG":
        return {}
    levels = {name: logging.ERROR for name in ("py.warnings", "pydicom", "highdicom")}
    levels["pydicom.pixels"] = logging.CRITICAL
    levels.update({name: logging.WARNING for name in LIBRARIES_AT_WARNING})
    return levels


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the node's logs to ``stream`` (default stderr) at ``level``, one line per record, with
    :func:`library_levels`; Python warnings go through logging (``py.warnings``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    for name in ("py.warnings", "pydicom", "pydicom.pixels", "highdicom", *LIBRARIES_AT_WARNING):
        logging.getLogger(name).setLevel(library_levels(level).get(name, logging.DEBUG))
