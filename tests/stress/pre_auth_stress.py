"""Pre-authentication stress on the receiver in its own process: its RSS and a configured peer's C-ECHO time
under each attack, at the default limits.

Run: ``python tests/stress/pre_auth_stress.py [--stream-mib 1024] [--flood 300]``. The receiver runs as a
child process (``--serve``) with the default configuration (node.max_associations 10, 8 per source, 2 unknown,
128 KiB A-ASSOCIATE-RQ limit); the attacks all come from the configured peer's own address (127.0.0.1), the
worst case, since strangers only ever get the 2 unknown-source slots. For each attack it prints the receiver's
peak RSS growth (sampled every 10 ms from /proc) over its RSS just before the attack and over its warmed-up
baseline (memory Python keeps after an attack shows up in the later figures), and the C-ECHO time measured
while the attack holds its connections:

* ``4gib-pdu``: ``max_associations`` connections each declare a 4 GiB A-ASSOCIATE-RQ and stream data after it.
* ``half-open``: ``max_associations`` connections send 3 bytes of a PDU header and stay silent.
* ``big-rq-held``: ``max_associations`` connections send all but the last byte of a maximum-size
  A-ASSOCIATE-RQ (128 KiB of transfer syntax items) and wait: the most a pending connection may buffer.
* ``big-rq-decoded``: the same requests completed, from an unknown AE title (decoded, then rejected).
* ``flood``: ``--flood`` connections opened as fast as possible and held.
The light version of these runs in CI (tests/receive/test_hostile_network.py); this one uses the default limits
and sizes, and prints figures instead of asserting.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "receive")]

from hostile_peers import Streamer, associate_rq, connect, echo_seconds, rss_bytes  # noqa: E402
from receive_helpers import Recorder, node_config  # noqa: E402
from tests.conftest import free_port  # noqa: E402

MIB = 1024 * 1024


def serve(spool: str, port: int) -> None:
    from dicomnode.receive import Receiver

    receiver = Receiver(node_config(Path(spool), port), Recorder())
    receiver.start()
    threading.Event().wait()


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_bytes(pid), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.01)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def attack(name: str, pid: int, port: int, baseline: int, run) -> None:
    before = rss_bytes(pid)
    monitor = PeakRss(pid)
    monitor.start()
    sockets: list[socket.socket] = []
    try:
        run(sockets)
        time.sleep(0.5)
        echo = echo_seconds(port)
    finally:
        for sock in sockets:
            sock.close()
    peak = monitor.stop()
    echo_text = f"{echo:.2f} s" if echo is not None else "FAILED"
    print(f"{name:<15} RSS growth {(peak - before) / MIB:6.1f} MiB (peak {(peak - baseline) / MIB:6.1f} MiB over "
          f"the baseline)   peer C-ECHO {echo_text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream-mib", type=int, default=1024, help="data streamed after each 4 GiB header")
    parser.add_argument("--flood", type=int, default=300)
    parser.add_argument("--serve", nargs=2, metavar=("SPOOL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    import subprocess

    port = free_port()
    cap = 10
    with tempfile.TemporaryDirectory() as spool:
        child = subprocess.Popen([sys.executable, __file__, "--serve", spool, str(port)],
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while echo_seconds(port) is None:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("receiver did not start")
                time.sleep(0.2)
            for _ in range(5):
                echo_seconds(port)  # warm up
            baseline = rss_bytes(child.pid)
            print(f"receiver pid {child.pid}, baseline RSS {baseline / MIB:.1f} MiB, cap {cap} connections")

            def four_gib(sockets):
                streamers = []
                for _ in range(cap):
                    sock = connect(port)
                    sockets.append(sock)
                    streamer = Streamer(sock, b"\x01\x00\xff\xff\xff\xff", args.stream_mib * MIB)
                    streamer.start()
                    streamers.append(streamer)
                for streamer in streamers:
                    streamer.join(60)
                accepted = sum(s.sent for s in streamers)
                print(f"  (the kernel accepted {accepted / MIB:.1f} MiB of {cap * args.stream_mib} MiB streamed "
                      "before the node closed the connections)")

            def half_open(sockets):
                for _ in range(cap):
                    sock = connect(port)
                    sock.sendall(b"\x01\x00\x00")
                    sockets.append(sock)

            from dicomnode.config import LimitsSection

            limit = LimitsSection().max_associate_request_bytes
            contexts = 3
            biggest = associate_rq(transfer_syntaxes=(limit - 400) // contexts // 21, contexts=contexts)
            assert len(biggest) - 6 <= limit
            print(f"  (maximum-size A-ASSOCIATE-RQ used: {len(biggest)} bytes)")

            def big_rq_held(sockets):
                for _ in range(cap):
                    sock = connect(port)
                    sock.sendall(biggest[:-1])
                    sockets.append(sock)

            stranger = associate_rq(calling="STRANGER", transfer_syntaxes=(limit - 400) // contexts // 21,
                                    contexts=contexts)

            def big_rq_decoded(sockets):
                for _ in range(cap):
                    sock = connect(port)
                    sock.sendall(stranger)
                    sockets.append(sock)

            def flood(sockets):
                for _ in range(args.flood):
                    try:
                        sockets.append(connect(port, timeout=5))
                    except OSError:
                        pass

            for name, run in (("4gib-pdu", four_gib), ("half-open", half_open), ("big-rq-held", big_rq_held),
                              ("big-rq-decoded", big_rq_decoded), ("flood", flood)):
                attack(name, child.pid, port, baseline, run)
                time.sleep(1)
            print(f"final RSS {rss_bytes(child.pid) / MIB:.1f} MiB")
        finally:
            child.terminate()
            child.wait(10)


if __name__ == "__main__":
    main()
