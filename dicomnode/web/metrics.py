"""``/metrics``: one Prometheus registry made of two parts.

- Events (counters and histograms of ``dicomnode.web.events``), summed over the node's processes from the
  multiprocess directory (``dicomnode.web.multiproc``).
- State, read when Prometheus scrapes: jobs, deliveries and instances by state from the database (so they are
  right after any restart, and across hosts sharing a PostgreSQL database), the queue depth, the age of the
  oldest waiting job, free disk space against the reserve, readiness, and the node's identity.

Metric names are listed in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from dicomnode import software_version
from dicomnode.web import health
from dicomnode.web.control import NodeControl
from dicomnode.web.identity import ModelCard
from dicomnode.web.queries import state_counts

MIB = 1024 * 1024


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _by_state(name: str, text: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=["state"])
    for state, count in counts.items():
        family.add_metric([state], count)
    return family


class StateCollector(Collector):
    """Gauges computed at scrape time from the database, the disk and the node's processes."""

    def __init__(self, control: NodeControl, card: ModelCard) -> None:
        self.control = control
        self.card = card

    def collect(self) -> Iterator[Metric]:
        config = self.control.config
        info = GaugeMetricFamily("kneealign_info", "The node's identity (value 1)",
                                 labels=["version", "ae_title", "model", "model_version", "training_data_kind"])
        info.add_metric([software_version(), config.node.ae_title, self.card.name, self.card.version,
                         self.card.training_data_kind], 1)
        yield info
        readiness = health.readiness(self.control)
        yield _gauge("kneealign_ready", "1 when /readyz answers 200", int(readiness.ready))
        yield _gauge("kneealign_database_up", "1 when the database answered this scrape",
                     int(readiness.checks["database"].ok))
        workers = [s for s in self.control.process_states() if s.name != "receiver"]
        yield _gauge("kneealign_workers_ready", "Worker processes running with the model loaded",
                     sum(1 for w in workers if w.alive and w.ready))
        space = health.disk(self.control)
        yield _gauge("kneealign_disk_free_bytes", "Free space on the file system of storage.dir", space.free_mb * MIB)
        yield _gauge("kneealign_disk_reserve_bytes", "storage.min_free_mb: below it C-STORE is refused",
                     space.reserve_mb * MIB)
        yield _gauge("kneealign_disk_headroom_bytes", "Free space above the reserve (negative: below it)",
                     space.headroom_mb * MIB)
        if not readiness.checks["database"].ok:
            return
        counts = state_counts(self.control.db)
        yield _by_state("kneealign_jobs", "Jobs in the database by state", counts.jobs)
        yield _gauge("kneealign_queue_depth", "Jobs waiting to run (queued, or failed and waiting for a retry)",
                     counts.queue_depth)
        age = 0.0
        if counts.oldest_waiting_job is not None:
            age = (datetime.now(UTC).replace(tzinfo=None) - counts.oldest_waiting_job).total_seconds()
        yield _gauge("kneealign_oldest_waiting_job_age_seconds", "Age of the oldest job waiting to run (0: none)",
                     max(age, 0.0))
        yield _by_state("kneealign_deliveries", "Deliveries of result objects in the database by state",
                        counts.deliveries)
        yield _by_state("kneealign_instances", "Received instances in the database by state", counts.instances)


def build_registry(control: NodeControl, card: ModelCard, events_dir: Path | None) -> CollectorRegistry:
    """The registry ``/metrics`` exports: the event files in ``events_dir`` (if any) and the state gauges."""
    registry = CollectorRegistry()
    if events_dir is not None:
        MultiProcessCollector(registry, path=str(events_dir))
    registry.register(StateCollector(control, card))
    return registry
