"""Liveness and readiness for an orchestrator (``/healthz``, ``/readyz``) and the status page.

Alive: the main process answers and is not shutting down. Ready (able to take images and process them):
the node has started, the receiver listens, at least one worker has loaded the model, the database answers
within ``DB_TIMEOUT_S``, and the free space under ``storage.dir`` is at or above ``storage.min_free_mb``
(below it the receiver refuses every C-STORE with 0xA700).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from dicomnode.durable import free_space_mb
from dicomnode.web.control import NodeControl
from dicomnode.web.queries import ping

DB_TIMEOUT_S = 3.0
_pings = ThreadPoolExecutor(max_workers=2, thread_name_prefix="db-ping")


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Disk:
    free_mb: float
    reserve_mb: int

    @property
    def headroom_mb(self) -> float:
        return self.free_mb - self.reserve_mb

    @property
    def ok(self) -> bool:
        return self.headroom_mb >= 0


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict:
        return {"ready": self.ready, "checks": {name: {"ok": c.ok, "detail": c.detail}
                                                for name, c in self.checks.items()}}


def disk(control: NodeControl) -> Disk:
    storage = control.config.storage
    return Disk(free_space_mb(storage.dir), storage.min_free_mb)


def database_check(control: NodeControl, timeout: float = DB_TIMEOUT_S) -> Check:
    if control.db is None:
        return Check(False, "not opened yet")
    future = _pings.submit(ping, control.db)
    try:
        future.result(timeout)
    except FutureTimeout:
        return Check(False, f"no answer within {timeout:.0f} s")
    except Exception as exc:  # noqa: BLE001 - any failure to answer means unready; the type says enough
        return Check(False, f"unreachable ({type(exc).__name__})")
    return Check(True, "answers")


def _process_checks(control: NodeControl) -> dict[str, Check]:
    states = control.process_states()
    receiver = [s for s in states if s.name == "receiver"]
    workers = [s for s in states if s.name != "receiver"]
    serving = sum(1 for w in workers if w.alive and w.ready)
    listening = bool(receiver) and receiver[0].alive and receiver[0].ready
    if serving:
        model = Check(True, f"loaded by {serving} of {len(workers)} worker(s)")
    elif control.starting:
        model = Check(False, "not loaded yet: the workers are loading it")
    else:
        model = Check(False, f"not loaded: none of {len(workers)} worker(s) has the model (a worker that cannot "
                             "load it exits and is restarted; see the log)")
    return {"receiver": Check(listening, "listening" if listening else "not running (being restarted?)"),
            "model": model}


def readiness(control: NodeControl) -> Readiness:
    checks: dict[str, Check] = {}
    if control.stopping:
        checks["node"] = Check(False, "shutting down")
    elif control.starting:
        checks["node"] = Check(False, "starting: the workers are loading the model")
    else:
        checks["node"] = Check(True, "running")
    checks.update(_process_checks(control))
    checks["database"] = database_check(control)
    space = disk(control)
    checks["disk"] = Check(space.ok, f"{space.free_mb:.0f} MiB free, reserve {space.reserve_mb} MiB" +
                           ("" if space.ok else ": below the reserve, C-STORE is refused with 0xA700"))
    return Readiness(checks)


def liveness(control: NodeControl) -> Check:
    return Check(False, "shutting down") if control.stopping else Check(True, "alive")
