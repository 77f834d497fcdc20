"""Several receiver processes (``node.receivers`` > 1): one acceptor admits every connection with the one
limiter and hands it to an association process. Checked over real sockets with dcmtk's storescu and raw PDUs:
the work is spread over the processes, the limits hold across all of them, and a dead process is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hostile_peers import associate_rq, closed_by_node, connect, echo_seconds, held, read_pdu_type
from receive_helpers import PidRecorder, node_config, run_storescu, store_statuses, stored_files
from receive_samples import image_dataset, write_part10

from dicomnode.receive import Receiver
from tests.conftest import child_pids, free_port

pytestmark = pytest.mark.integration
PER_SOURCE = 3
A_ASSOCIATE_AC = 0x02


@pytest.fixture
def pool_receiver(tmp_path: Path):
    started: list[Receiver] = []

    def start(receivers: int = 3, **node) -> tuple[Receiver, PidRecorder]:
        hooks = PidRecorder(tmp_path / "stored.txt")
        config = node_config(tmp_path / "spool", free_port(), node={"receivers": receivers, **node},
                             limits={"max_connections_per_source": PER_SOURCE})
        receiver = Receiver(config, lambda _: None, hooks=hooks)
        receiver.start()
        started.append(receiver)
        return receiver, hooks

    yield start
    for receiver in started:
        receiver.stop(grace_seconds=1)


def _files(tmp_path: Path, count: int, offset: int = 0) -> list[Path]:
    return [write_part10(image_dataset("DX", rows=64, columns=64, seed=offset + n), tmp_path / f"in{offset + n}.dcm")
            for n in range(count)]


def test_parallel_associations_run_in_several_processes_and_every_instance_is_stored(pool_receiver, dcmtk,
                                                                                    tmp_path):
    receiver, hooks = pool_receiver()
    association_pids = set(child_pids(os.getpid()))
    files = _files(tmp_path, 12)
    senders = [subprocess.Popen([dcmtk["storescu"], "-aet", "SENDER", "-aec", "KNEEALIGN", "127.0.0.1",
                                 str(receiver.port), *map(str, files[n::3])]) for n in range(3)]
    assert [sender.wait(60) for sender in senders] == [0, 0, 0]
    lines = hooks.lines()
    assert sorted(uid for _, uid in lines) == sorted({uid for _, uid in lines}) and len(lines) == 12
    pids = {pid for pid, _ in lines}
    assert os.getpid() not in pids, "stored by the association processes, not by the acceptor"
    assert len(pids) >= 2, f"three parallel associations all ran in one process: {pids}"
    assert pids <= association_pids, "by this receiver's own association processes"
    assert len(stored_files(receiver)) == 12


def test_the_per_source_limit_holds_across_processes(pool_receiver):
    receiver, _ = pool_receiver()

    def established():
        sock = connect(receiver.port)
        sock.sendall(associate_rq())
        assert read_pdu_type(sock) == A_ASSOCIATE_AC
        return sock

    with held([established() for _ in range(PER_SOURCE)]) as sockets:
        assert echo_seconds(receiver.port) is None, "the limit counts associations in every process"
        for sock in sockets:
            assert not closed_by_node(sock, 0.05), "accepted associations are never evicted"
    deadline = time.monotonic() + 10
    while echo_seconds(receiver.port) is None:  # the slots come back once the processes report the closes
        assert time.monotonic() < deadline, "slots not freed after the connections closed"
        time.sleep(0.2)


def test_half_open_connections_are_evicted_for_a_configured_peer_across_processes(pool_receiver):
    receiver, _ = pool_receiver()
    with held([connect(receiver.port) for _ in range(PER_SOURCE)]) as pending:
        elapsed = echo_seconds(receiver.port)
        assert elapsed is not None and elapsed < 5, "a pending connection made room for the peer's C-ECHO"
        assert sum(closed_by_node(sock, 2) for sock in pending) >= 1


def test_a_dead_association_process_is_replaced_and_nothing_acknowledged_is_lost(pool_receiver, dcmtk, tmp_path):
    receiver, hooks = pool_receiver(receivers=2)
    first = _files(tmp_path, 2)
    assert store_statuses(run_storescu(dcmtk, receiver.port, first)) == [0, 0]
    killed = {pid for pid, _ in hooks.lines()}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    second = _files(tmp_path, 2, offset=10)
    deadline = time.monotonic() + 30
    while store_statuses(run_storescu(dcmtk, receiver.port, second)) != [0, 0]:
        assert time.monotonic() < deadline, "no association process took over"
        receiver.supervise()  # what the receiver process's loop does every second
        time.sleep(0.5)
    lines = hooks.lines()
    assert {pid for pid, _ in lines} - killed, "the second send was stored by a new process"
    assert len({uid for _, uid in lines}) == 4 and len(stored_files(receiver)) == 4
