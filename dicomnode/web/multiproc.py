"""prometheus-client's multiprocess mode for ``dicomnode serve``.

The node's events happen in several processes: C-STOREs in the receiver, jobs in the workers, deliveries in
the main process. Each process writes its counters and histograms to memory-mapped files of its own in one
directory; the main process sums them at every scrape (``MultiProcessCollector``). A child that dies and is
restarted leaves its files behind, so nothing it counted is lost; the directory is new at each start of the
node, so counters start from zero then, which Prometheus treats as any counter reset.

prometheus-client decides between in-memory and file-backed values when it is first imported, from the
``PROMETHEUS_MULTIPROC_DIR`` environment variable: :func:`prepare` must run in the main process before
anything imports ``prometheus_client`` and before the children are spawned (they inherit the variable).
This module does not import it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"


def active() -> bool:
    """True if this process's prometheus-client writes its values to the multiprocess directory."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def prepare() -> Path:
    """A new, empty directory for this run's metric files, announced to this process and its future children."""
    path = Path(tempfile.mkdtemp(prefix="kneealign-metrics-"))
    os.environ[ENV] = str(path)
    if "prometheus_client" in sys.modules and not active():
        log.warning("prometheus_client was imported before the metrics directory was set: this process's own "
                    "counters (deliveries) will be missing from /metrics")
    return path


def remove(path: Path) -> None:
    """Delete the run's metric files (at shutdown)."""
    if os.environ.get(ENV) == str(path):
        del os.environ[ENV]
    shutil.rmtree(path, ignore_errors=True)
