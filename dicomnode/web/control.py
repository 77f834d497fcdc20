"""What the web side needs of the running node (``dicomnode.service.Service`` provides it): the
configuration, the database, the state of its processes, and two nudges after a requeue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dicomnode.config import NodeConfig
from dicomnode.db import Database


@dataclass(frozen=True)
class ProcessState:
    """A child process of the node: ``ready`` once it serves (the receiver listens, a worker has the model)."""

    name: str
    pid: int | None
    alive: bool
    ready: bool
    restarts: int = 0


class NodeControl(Protocol):
    config: NodeConfig
    db: Database | None
    host: str  # this machine's name
    started_at: datetime  # UTC

    @property
    def starting(self) -> bool:
        """True until every child has reported ready once."""

    @property
    def stopping(self) -> bool: ...

    def process_states(self) -> list[ProcessState]: ...

    def wake_workers(self) -> None:
        """A job was queued again: let idle workers claim it now."""

    def dispatch_soon(self) -> None:
        """A delivery was queued again: run the dispatcher now instead of at its next interval."""
