"""The whole hostile-input corpus through a real node, with figures.

    python tests/stress/hostile_run.py [--ci-only] [--family F ...] [--keep] [--list]

Starts ``dicomnode serve`` (subprocess, temporary directory, shipped weights, one worker) with a dcmtk
``storescp`` as the destination, writes every case of ``tests/hostile/corpus.py``, sends them over pynetdicom
associations byte for byte, waits until every acknowledged one is processed, skipped or failed, and judges each
against its expected outcome. Then: a valid knee sent after the corpus must get its SR and SC, the node's
workers and sandboxes must have stayed under their memory bounds, and no file may have appeared outside the
spool. Prints one line per mismatch and the counts per family and outcome; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests.conftest import free_port  # noqa: E402
from tests.hostile import harness  # noqa: E402
from tests.hostile.corpus import cases  # noqa: E402
from tests.hostile.nodecheck import after_corpus_checks, start_node  # noqa: E402
from tests.stress.common import finish  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci-only", action="store_true", help="only the cases the CI test runs")
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    parser.add_argument("--name", help="only cases whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    selected = [c for c in cases() if (c.ci or not args.ci_only) and (not args.family or c.family in args.family)
                and (not args.name or args.name in c.name)]
    if args.list:
        for case in selected:
            print(f"{case.name:50s} {case.expect.outcome:10s} {case.expect.reason or case.expect.statuses}")
        print(f"{len(selected)} case(s)")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="kneealign-hostile-"))
    started = time.monotonic()
    node, destination = start_node(workdir, free_port(), free_port(), wait=False)
    try:
        written = harness.write_cases(selected, workdir / "cases")
        node.wait_ready()
        print(f"{len(written)} case files written and the node started in {time.monotonic() - started:.0f} s",
              flush=True)
        t0 = time.monotonic()
        sent = harness.send(node.port, written)
        print(f"sent in {time.monotonic() - t0:.1f} s", flush=True)
        uids = [s.sop_instance_uid for s in sent if s.status == 0 and s.sop_instance_uid]
        seen = harness.wait_settled(node.database, uids, timeout=60 + 20 * len(uids))
        print(f"settled {time.monotonic() - t0:.0f} s after the first send", flush=True)
        counts: collections.Counter = collections.Counter()
        bad = 0
        for item in sent:
            problem = harness.judge(item, seen.get(item.sop_instance_uid or ""))
            counts[(item.case.family, item.case.expect.outcome, "ok" if problem is None else "MISMATCH")] += 1
            if problem:
                bad += 1
                print(f"MISMATCH {item.case.name}: {problem}")
        for (family, outcome, verdict), n in sorted(counts.items()):
            print(f"{family:12s} {outcome:10s} {verdict:8s} {n}")
        report = after_corpus_checks(node, destination, workdir)
        for line in report.lines:
            print(line)
        print(f"{len(sent)} cases, {len(sent) - bad} as expected, {bad} mismatch(es); "
              f"{time.monotonic() - started:.0f} s in all")
        return 1 if bad or report.problems else 0
    finally:
        finish(workdir, args.keep, node, destination)


if __name__ == "__main__":
    sys.exit(main())
