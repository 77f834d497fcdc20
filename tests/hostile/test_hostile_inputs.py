"""The hostile-input suite (CI portion): every ``ci`` case of the corpus (tests/hostile/corpus.py) sent through
a real ``dicomnode serve`` (receiver, worker with its sandbox, shipped weights), each judged against its expected
outcome (refused at receipt with its status, processed, skipped, or failed once with its reason). Then the node
must still serve (a valid knee gets exactly one SR and one SC), its workers and sandboxes must have stayed
within their memory bounds, nothing may have been written outside the spool or with world access, no permanent
failure may have been attempted twice, and no forged line may appear in its log.

The larger run (every case, with figures) is ``python tests/stress/hostile_run.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.hostile import harness
from tests.hostile.corpus import ci_cases
from tests.hostile.nodecheck import AfterReport, after_corpus_checks, start_node
from tests.node.nodeproc import STORESCP, STORESCU

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CASES = ci_cases()
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@dataclass
class CorpusRun:
    sent: dict[str, harness.Sent]
    seen: dict[str, harness.Observed]
    after: AfterReport
    log: str


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, shipped_weights) -> CorpusRun:
    require_tool(STORESCU, "--version", "DCMTK")
    require_tool(STORESCP)
    workdir: Path = tmp_path_factory.mktemp("hostile")
    node, destination = start_node(workdir, free_port(), free_port(), wait=False)
    try:
        written = harness.write_cases(CASES, workdir / "cases")  # while the node loads its model
        sent = harness.send(node.wait_ready().port, written)
        uids = [s.sop_instance_uid for s in sent if s.status == 0 and s.sop_instance_uid]
        seen = harness.wait_settled(node.database, uids, timeout=300)
        after = after_corpus_checks(node, destination, workdir)
        return CorpusRun({s.case.name: s for s in sent}, seen, after, node.log())
    finally:
        node.stop()
        destination.stop()


def test_the_corpus_is_large_enough():
    from tests.hostile.corpus import cases

    assert len(cases()) >= 250 and len(CASES) >= 200


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_each_case_gets_its_expected_outcome(corpus_run, name):
    sent = corpus_run.sent[name]
    assert harness.judge(sent, corpus_run.seen.get(sent.sop_instance_uid or "")) is None, (
        harness.judge(sent, corpus_run.seen.get(sent.sop_instance_uid or "")))


def test_afterwards_the_node_serves_within_its_bounds(corpus_run):
    assert corpus_run.after.problems == [], "\n".join(corpus_run.after.lines)


def test_no_line_of_the_log_was_forged(corpus_run):
    lines = [line for line in corpus_run.log.splitlines() if line.strip()]
    assert all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)][:5]
    assert "FORGED" not in corpus_run.log and "\x1b" not in corpus_run.log
