"""Keep each DIMSE response for the call that waits for it, on an association this node requested.

pynetdicom (3.0) runs a reactor thread on every association, also as requestor, that serves requests from the peer
by taking messages off the DIMSE queue. ``send_c_store`` (and the other ``send_*``) pause it first: they clear a
checkpoint event, wait while the reactor's ``_is_paused`` flag is false, send the request and wait for the response.
The flag is stale for a moment after the previous call set the checkpoint again: the reactor has returned from the
checkpoint but not yet set the flag back to false. A call started in that moment sends at once; if the peer answers
within a few milliseconds (a quick refusal), the reactor takes the response, drops it as "unexpected", and the call
waits out the whole DIMSE timeout; the association is then aborted. Seen about once in 2,000 quick C-STOREs on this
2-core machine (the hostile corpus, whose refusals come back in 5 ms).

:func:`keep_responses` closes the gap without changing pynetdicom: the reactor takes a message only while the
checkpoint is set, tested and taken under one lock that clearing the checkpoint also takes. A message the reactor
takes was therefore on the queue before the call cleared the checkpoint, and so before its request was sent.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom.association import Association


class _Checkpoint(threading.Event):
    """The reactor's checkpoint: set = the reactor may run; clearing it waits for a message being taken."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._lock = lock
        self.set()

    def clear(self) -> None:
        with self._lock:
            super().clear()


def keep_responses(assoc: Association) -> Association:
    """Guard ``assoc`` (an established association this node requested) as the module docstring says; returns it."""
    lock = threading.Lock()
    checkpoint = _Checkpoint(lock)
    take = assoc.dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if threading.current_thread() is not assoc:  # a send_*() call, not the reactor: unchanged
            return take(block)
        with lock:
            if not checkpoint.is_set():
                return None, None  # a call is waiting for its response: leave the queue to it
            return take(block)

    assoc.dimse.get_msg = get_msg  # type: ignore[method-assign]
    assoc._reactor_checkpoint = checkpoint
    return assoc
