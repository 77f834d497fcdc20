"""A response stays with the call that waits for it (dicomnode/dispatch/responses.py), on a real association with
dcmtk's storescp.

pynetdicom's race lasts microseconds: here its moment is held open. The reactor's checkpoint is made to let the
reactor through, as when it has just returned from the checkpoint while a call clears it, and a response is put on
the DIMSE queue as if the peer had answered at once. Unguarded, pynetdicom's reactor takes the response and drops it
(the call would wait out its DIMSE timeout); guarded, it stays on the queue for the call.
"""

from __future__ import annotations

import time

import pytest
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification
from receive_helpers import node_config
from receive_samples import image_dataset, write_part10

from dicomnode.dispatch.responses import keep_responses
from dicomnode.dispatch.scu import StoreSession
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _quick_response() -> C_ECHO:
    response = C_ECHO()
    response.MessageIDBeingRespondedTo = 1
    response.Status = 0x0000
    return response


@pytest.mark.parametrize("guarded", [False, True], ids=["pynetdicom-alone", "keep_responses"])
def test_a_quick_response_is_left_for_the_waiting_call(start_storescp, guarded):
    port, _ = start_storescp()
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="DEST")
    assert assoc.is_established
    try:
        if guarded:
            keep_responses(assoc)
        checkpoint = assoc._reactor_checkpoint
        checkpoint.wait = lambda timeout=None: True  # the reactor is past the checkpoint when the call clears it
        checkpoint.clear()  # what send_c_store() does before it sends its request
        assoc.dimse.msg_queue.put((1, _quick_response()))
        deadline = time.monotonic() + (0.5 if guarded else 5.0)
        while time.monotonic() < deadline and not assoc.dimse.msg_queue.empty():
            time.sleep(0.01)
        left = assoc.dimse.msg_queue.qsize()
        del checkpoint.wait  # the class's wait() again
        checkpoint.set()
        if guarded:
            assert left == 1, "the reactor took the response meant for the waiting call"
            assoc.dimse.msg_queue.get_nowait()
            assert assoc.send_c_echo().Status == 0x0000  # and the guarded association works as before
        else:
            assert left == 0, "pynetdicom's reactor no longer takes a waiting call's response: is the guard needed?"
    finally:
        assoc.release() if assoc.is_established else None


def test_the_nodes_store_sessions_are_guarded(start_storescp, tmp_path):
    """The dispatcher's SCU (dicomnode/dispatch/scu.py) opens its associations with the guard."""
    port, out = start_storescp()
    config = node_config(tmp_path / "spool", free_port(),
                         extra_peers=[{"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": port}])
    image = write_part10(image_dataset("DX"), tmp_path / "dx.dcm")
    with StoreSession(config.peer_by_name("dest"), config, [image]) as session:
        checkpoint = session._assoc._reactor_checkpoint
        assert type(checkpoint).__module__ == "dicomnode.dispatch.responses" and checkpoint.is_set()
        assert [result.status for result in session.send_all()] == [0x0000]
    assert len(list(out.iterdir())) == 1
