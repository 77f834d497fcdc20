"""One log format for the node's processes (service, receiver, workers, command line), on stderr."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send the node's logs to stderr at ``level``; third-party libraries stay at WARNING unless DEBUG."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr, force=True)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("pynetdicom", "apscheduler", "sqlalchemy", "PIL", "matplotlib", "highdicom"):
        logging.getLogger(name).setLevel(quiet)
