"""Running the hostile corpus through a real node: write each case's file, send them all to a running
``dicomnode serve`` over one association (pynetdicom, files sent byte for byte as written), read back what the
node made of each (the C-STORE status, then the instance, job and result rows in its SQLite database), and judge
each case against its expected outcome.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, build_context

from dicomnode.dispatch.responses import keep_responses
from tests.hostile.builders import encode
from tests.hostile.corpus import FAILED, NEVER, PROCESSED, REFUSED, SKIPPED, Case
from tests.node.nodeproc import MODALITY_AE, NODE_AE

TERMINAL_INSTANCE_STATES = ("processed", "skipped", "failed")


@dataclass
class Sent:
    case: Case
    path: Path
    sop_instance_uid: str | None
    status: int | None  # the C-STORE status, None if it could not be sent
    error: str = ""


@dataclass
class Observed:
    instance_state: str | None = None
    reason: str | None = None
    job_state: str | None = None
    attempts: int = 0
    last_error: str | None = None
    outputs: tuple[str, ...] = ()


def write_cases(cases: Iterable[Case], directory: Path) -> list[tuple[Case, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for n, case in enumerate(cases):
        path = directory / f"{n:04d}-{case.name.replace('/', '_')}.dcm"
        made = case.make()
        path.write_bytes(made if isinstance(made, bytes) else encode(made))
        written.append((case, path))
    return written


def _meta(path: Path) -> tuple[str, str, str]:
    meta = read_file_meta_info(path)  # the meta group only: the dataset may be anything
    return (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID), str(meta.MediaStorageSOPInstanceUID))


def send(port: int, files: list[tuple[Case, Path]], host: str = "127.0.0.1", batch: int = 100) -> list[Sent]:
    """C-STORE every file as written (pynetdicom's chunked send: no decoding, no re-encoding), a new
    association every ``batch`` files; each file's status, or None and the error if it could not be sent."""
    results: list[Sent] = []
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # pynetdicom-wide: restored below, or later tests send differently
    try:
        _send_batches(port, files, host, batch, results)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
    return results


def _send_batches(port: int, files: list[tuple[Case, Path]], host: str, batch: int, results: list[Sent]) -> None:
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        metas = {path: _meta(path) for _, path in chunk}
        ae = AE(ae_title=MODALITY_AE)
        ae.dimse_timeout = ae.network_timeout = 600  # a receiver that inflates a bomb whole answers late
        # One context per (SOP class, transfer syntax): the acceptor picks one syntax per context.
        pairs = sorted({(sop_class, syntax) for sop_class, syntax, _ in metas.values()})
        assert len(pairs) <= 128, "more presentation contexts than one association can carry"
        ae.requested_contexts = [build_context(sop_class, [syntax]) for sop_class, syntax in pairs]
        assoc = keep_responses(ae.associate(host, port, ae_title=NODE_AE))
        assert assoc.is_established, "the node refused the association"
        try:
            for case, path in chunk:
                uid = metas[path][2]
                try:
                    status = assoc.send_c_store(path)
                except (ValueError, AttributeError, RuntimeError) as exc:
                    results.append(Sent(case, path, uid, None, f"{type(exc).__name__}: {exc}"))
                    continue
                code = int(status.Status) if "Status" in status else None
                results.append(Sent(case, path, uid, code, "" if code is not None else "no response"))
                if not assoc.is_established:
                    assoc = keep_responses(ae.associate(host, port, ae_title=NODE_AE))
        finally:
            if assoc.is_established:
                assoc.release()


def observe(database: Path, uids: Iterable[str]) -> dict[str, Observed]:
    """What the node's database says of each SOP Instance UID (absent ones are left out)."""
    wanted = list(uids)
    found: dict[str, Observed] = {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        for n in range(0, len(wanted), 500):
            part = wanted[n:n + 500]
            marks = ",".join("?" * len(part))
            rows = connection.execute(
                f"SELECT i.sop_instance_uid, i.state, i.reason, j.state, j.attempts, j.last_error, i.id "
                f"FROM instances i LEFT JOIN jobs j ON j.instance_id = i.id WHERE i.sop_instance_uid IN ({marks}) "
                f"ORDER BY j.id", part).fetchall()
            for uid, state, reason, job_state, attempts, last_error, instance_id in rows:
                kinds = tuple(sorted(k for (k,) in connection.execute(
                    "SELECT o.kind FROM outputs o JOIN results r ON r.id = o.result_id WHERE r.instance_id = ?",
                    (instance_id,))))
                found[uid] = Observed(state, reason, job_state, attempts or 0, last_error, kinds)
    return found


def _settled(seen: Observed | None) -> bool:
    """Processed, skipped or failed, with its job finished; or skipped at receipt, which gives no job."""
    if seen is None or seen.instance_state not in TERMINAL_INSTANCE_STATES:
        return False
    return seen.job_state in ("done", "dead") or (seen.job_state is None and seen.instance_state == "skipped")


def wait_settled(database: Path, uids: list[str], timeout: float) -> dict[str, Observed]:
    """Poll until every instance has settled (see :func:`_settled`), or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe(database, uids)
        if all(_settled(seen.get(u)) for u in uids) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def judge(sent: Sent, seen: Observed | None) -> str | None:
    """None if the case's outcome is the expected one, else what went wrong (for the assertion message)."""
    expect = sent.case.expect
    if sent.status is None:
        return f"not sent: {sent.error}"
    if expect.outcome == REFUSED:
        if sent.status in expect.statuses and seen is None:
            return None
        return f"expected refusal {[hex(s) for s in expect.statuses]}, got 0x{sent.status:04X} and {seen}"
    if sent.status != 0:
        if expect.outcome == NEVER and sent.status >= 0xA000:
            return None
        return f"expected acceptance, got 0x{sent.status:04X}"
    if seen is None:
        return "acknowledged but not in the database"
    if expect.outcome == PROCESSED:
        ok = seen.instance_state == "processed" and {"sr", "sc"} <= set(seen.outputs) and seen.job_state == "done"
        return None if ok else f"expected an SR and an SC, got {seen}"
    if expect.outcome == SKIPPED:
        ok = seen.instance_state == "skipped" and expect.reason in (seen.reason or "")
        return None if ok else f"expected skipped ({expect.reason!r}), got {seen}"
    if expect.outcome in (FAILED, NEVER):
        ok = (seen.instance_state == "failed" and seen.job_state == "dead" and seen.attempts == 1
              and (seen.last_error or "").startswith("permanent:") and expect.reason in (seen.reason or ""))
        return None if ok else f"expected one permanent failure ({expect.reason!r}), got {seen}"
    return f"unknown expected outcome {expect.outcome}"
