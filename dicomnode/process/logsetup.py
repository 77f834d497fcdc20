"""One log format for the node's processes (service, receiver, workers, command line), on stderr, and the levels
that keep libraries from logging attribute values."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def library_levels(level: str = "INFO") -> dict[str, int]:
    """The level of each third-party logger when the node logs at ``level`` (everything at DEBUG when DEBUG).

    - Library warnings can quote attribute values (highdicom's person-name check quotes the patient's name);
      pydicom logs every invalid value it reads at WARNING, quoting it ("Invalid value for VR DA: '1961-02-03'",
      "Unknown encoding 'X'"): those loggers show only errors.
    - pydicom's pixel decoders log each failed attempt at ERROR with a full traceback; the node records the
      failure itself (curated, one line), so those are silent.
    - The others (network, scheduler, database, drawing) stay at WARNING.
    """
    if level == "DEBUG":
        return {}
    levels = {name: logging.ERROR for name in ("py.warnings", "pydicom", "highdicom")}
    levels["pydicom.pixels"] = logging.CRITICAL
    levels.update({name: logging.WARNING for name in ("pynetdicom", "apscheduler", "sqlalchemy", "PIL",
                                                      "matplotlib")})
    return levels


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the node's logs to ``stream`` (default stderr) at ``level``, with :func:`library_levels`; Python
    warnings go through logging (``py.warnings``)."""
    logging.basicConfig(level=level, format=FORMAT, stream=stream or sys.stderr, force=True)
    logging.captureWarnings(True)
    for name in ("py.warnings", "pydicom", "pydicom.pixels", "highdicom", "pynetdicom", "apscheduler", "sqlalchemy",
                 "PIL", "matplotlib"):
        logging.getLogger(name).setLevel(library_levels(level).get(name, logging.DEBUG))
