"""The event counters: every series known in advance exists from the start, and counting never raises into
the receiver, the workers or the dispatcher."""

from __future__ import annotations

import logging

import pytest

from dicomnode.config import NodeConfig
from dicomnode.web import events


def _label_values(metric, label: str) -> set[str]:
    return {s.labels[label] for family in metric.collect() for s in family.samples if s.name.endswith("_total")}


def test_prepare_creates_every_known_series():
    events.prepare(NodeConfig.model_validate({"peers": [
        {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}]}))
    metrics = events._get()
    assert _label_values(metrics.refused, "reason") >= {*events.REFUSAL_REASONS.values(), "other"}
    assert _label_values(metrics.rejected, "reason") >= {"calling_ae_not_recognised", "called_ae_not_recognised"}
    assert _label_values(metrics.jobs, "outcome") >= {"done", "failed", "dead"}
    assert _label_values(metrics.results, "status") >= {"ok", "low_confidence", "skipped"}
    assert "pacs" in _label_values(metrics.received, "peer")
    assert {("pacs", outcome) for outcome in ("delivered", "retry", "dead")} <= {
        (s.labels["peer"], s.labels["outcome"]) for family in metrics.deliveries.collect() for s in family.samples
        if s.name.endswith("_total")}


def test_counting_never_raises_and_warns_once(monkeypatch, caplog):
    def broken():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events, "_get", broken)
    monkeypatch.setattr(events, "_failed_once", type(events._failed_once)())
    with caplog.at_level(logging.WARNING, logger="dicomnode.web.events"):
        events.instance_received("pacs")
        events.instance_refused(0xA700)
        events.job_finished("done", 1.0)
        events.deliveries_recorded(None, "pacs", {1: "delivered"})
    assert [r.message for r in caplog.records] == [
        "counting instance_received for /metrics failed; metrics may be incomplete"]


@pytest.mark.parametrize("status, reason", [(0xA700, "out_of_resources"), (0xC002, "not_an_image"),
                                            (0xB000, "other")])
def test_refusals_are_counted_by_reason(status, reason):
    counter = events._get().refused.labels(reason)
    before = counter._value.get()
    events.instance_refused(status)
    assert counter._value.get() == before + 1
