"""One log format for the node's processes (service, receiver, workers, command line), on stderr."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send the node's logs to stderr at ``level``; third-party libraries stay at WARNING unless DEBUG."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr, force=True)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    # Library warnings can quote attribute values (highdicom's person-name check quotes the patient's name):
    # route them through logging and keep them out of the logs unless DEBUG.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
    for name in ("pynetdicom", "apscheduler", "sqlalchemy", "PIL", "matplotlib", "highdicom"):
        logging.getLogger(name).setLevel(quiet)
