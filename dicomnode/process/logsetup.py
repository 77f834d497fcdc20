"""One log format for the node's processes (service, receiver, workers, command line), on stderr.

Every record is one line: control characters in the message (a CR/LF inside an AE title or UID that a peer
sent, quoted by the node or by a library) are escaped by :class:`OneLineFormatter`, so no log line can be
forged. A traceback, when one is logged, follows on its own indented lines.
"""

from __future__ import annotations

import logging
import sys

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


def configure_logging(level: str = "INFO") -> None:
    """Send the node's logs to stderr at ``level``; third-party libraries stay at WARNING unless DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    # Library warnings can quote attribute values (highdicom's person-name check quotes the patient's name):
    # route them through logging and keep them out of the logs unless DEBUG.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
    # pydicom logs its validation warnings at WARNING quoting the offending value ("Invalid value for VR PN:
    # '<the patient's name>'"): a received header with one malformed attribute would put it in the log.
    logging.getLogger("pydicom").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
    for name in ("pynetdicom", "apscheduler", "sqlalchemy", "PIL", "matplotlib", "highdicom"):
        logging.getLogger(name).setLevel(quiet)
