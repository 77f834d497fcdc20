"""Counters and histograms of the node's events, incremented where each event happens: the receiver
(instances received and refused, associations rejected), the workers (jobs and results, processing time) and
the dispatcher (delivery attempts, time from receipt to delivery). ``/metrics`` exports them together
(``dicomnode.web.multiproc``).

The metrics are created by :func:`prepare` when a process of the service starts (or on first use), not at
import, so that they come after ``multiproc.prepare()``. ``prepare`` also creates every label value known in
advance, so that each series exists from the start at 0 (``rate()`` and alerts need that) and its file pages
are written while the disk has room. They are registered in no registry: in the service the multiprocess
collector reads them from their files; elsewhere (tests, ``dicomnode process``) they only count in memory.
Counting never raises: a metrics problem is logged once and must not stop receiving, processing or sending.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec

from dicomnode.db.models import DELIVERY_DEAD, DELIVERY_DELIVERED, DELIVERY_PENDING, JOB_DEAD, JOB_DONE, JOB_FAILED

if TYPE_CHECKING:
    from dicomnode.config import NodeConfig
    from dicomnode.db import Database

log = logging.getLogger(__name__)

# C-STORE statuses the receiver refuses with (dicomnode.receive.store) -> metric label.
REFUSAL_REASONS = {
    0xA700: "out_of_resources",
    0xA900: "sop_mismatch",
    0xC000: "cannot_parse",
    0xC001: "missing_uid",
    0xC002: "not_an_image",
    0xC211: "internal_error",
    0x0110: "not_queued",
}
# A-ASSOCIATE-RJ diagnostics (dicomnode.receive.access) -> metric label.
REJECTION_REASONS = {0x03: "calling_ae_not_recognised", 0x07: "called_ae_not_recognised"}

JOB_OUTCOMES = (JOB_DONE, JOB_FAILED, JOB_DEAD)
RESULT_STATUSES = ("ok", "low_confidence", "skipped")
_DELIVERY_OUTCOMES = {DELIVERY_DELIVERED: "delivered", DELIVERY_PENDING: "retry", DELIVERY_DEAD: "dead"}

PROCESSING_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
END_TO_END_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 900, 3600, 14400)

_lock = threading.Lock()
_metrics: _Metrics | None = None


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        def counter(name: str, text: str, labels: tuple[str, ...]) -> Any:
            return Counter(name, text, labels, registry=None)

        self.received = counter("kneealign_instances_received", "Instances stored and queued (C-STORE "
                                "answered 0x0000), re-sends included", ("peer",))
        self.refused = counter("kneealign_instances_refused", "C-STOREs answered with a failure status, by "
                               "reason", ("reason",))
        self.rejected = counter("kneealign_associations_rejected", "Associations rejected by the access check, "
                                "by reason", ("reason",))
        self.jobs = counter("kneealign_jobs_finished", "Job attempts that ended, by outcome: done, failed "
                            "(retried later), dead (no attempts left)", ("outcome",))
        self.results = counter("kneealign_results", "Instances processed by the workers, by result status: ok, "
                               "low_confidence, skipped", ("status",))
        self.deliveries = counter("kneealign_delivery_attempts", "C-STORE attempts of result objects, by "
                                  "destination and outcome: delivered, retry, dead", ("peer", "outcome"))
        self.processing = Histogram("kneealign_processing_seconds", "Time a worker spent on a job that ended "
                                    "done (claim to completion)", buckets=PROCESSING_BUCKETS, registry=None)
        self.end_to_end = Histogram("kneealign_end_to_end_seconds", "Time from the receipt of a source image "
                                    "to the delivery of one of its result objects", buckets=END_TO_END_BUCKETS,
                                    registry=None)

    def create_series(self, peers: Iterable[str]) -> None:
        """Every label value known in advance, at 0."""
        for reason in (*REFUSAL_REASONS.values(), "other"):
            self.refused.labels(reason)
        for reason in (*REJECTION_REASONS.values(), "other"):
            self.rejected.labels(reason)
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome)
        for status in RESULT_STATUSES:
            self.results.labels(status)
        for peer in peers:
            self.received.labels(peer)
            for outcome in _DELIVERY_OUTCOMES.values():
                self.deliveries.labels(peer, outcome)


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


P = ParamSpec("P")
_failed_once = threading.Event()


def _never_raises(count: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(count)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            count(*args, **kwargs)
        except Exception:  # noqa: BLE001 - e.g. the metrics directory is gone or its disk is full
            if not _failed_once.is_set():
                _failed_once.set()
                log.warning("counting %s for /metrics failed; metrics may be incomplete", count.__name__,
                            exc_info=True)

    return guarded


@_never_raises
def prepare(config: NodeConfig) -> None:
    """Create the metrics and their known series in this process (call at its start)."""
    _get().create_series(peer.name for peer in config.peers)


@_never_raises
def instance_received(peer: str | None) -> None:
    _get().received.labels(peer or "").inc()


@_never_raises
def instance_refused(status: int) -> None:
    _get().refused.labels(REFUSAL_REASONS.get(status, "other")).inc()


@_never_raises
def association_rejected(diagnostic: int) -> None:
    _get().rejected.labels(REJECTION_REASONS.get(diagnostic, "other")).inc()


@_never_raises
def job_finished(outcome: str, seconds: float) -> None:
    """``outcome``: the job's state afterwards (done, failed, dead; anything else, such as a job requeued
    meanwhile, is not an outcome of this attempt); ``seconds`` is observed for done jobs."""
    if outcome not in JOB_OUTCOMES:
        return
    metrics = _get()
    metrics.jobs.labels(outcome).inc()
    if outcome == "done":
        metrics.processing.observe(seconds)


@_never_raises
def result_recorded(status: str) -> None:
    _get().results.labels(status).inc()


@_never_raises
def deliveries_recorded(db: Database, peer: str, states: Mapping[int, str]) -> None:
    """Count the attempts the dispatcher just recorded (delivery id -> new state) and observe, for each one
    delivered, the time since its source image was received."""
    metrics = _get()
    for state in states.values():
        metrics.deliveries.labels(peer, _DELIVERY_OUTCOMES.get(state, state)).inc()
    delivered = [delivery_id for delivery_id, state in states.items() if state == DELIVERY_DELIVERED]
    if not delivered:
        return
    from dicomnode.web.queries import delivery_latencies

    for seconds in delivery_latencies(db, delivered):
        metrics.end_to_end.observe(max(seconds, 0.0))
