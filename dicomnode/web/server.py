"""uvicorn in a thread of ``dicomnode serve``'s main process, on a socket bound here first so that a port in
use is a clear start-up error (uvicorn's own binding would exit the whole process)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)
START_TIMEOUT_S = 15.0


class HttpServerError(RuntimeError):
    """The status page could not be served (address not available, port in use)."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise HttpServerError(f"http.bind {host!r}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise HttpServerError(f"cannot listen on {host}:{port} (http): {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class HttpServer:
    """Serve ``app`` on ``host:port`` from a daemon thread; ``start()`` returns once it accepts connections."""

    def __init__(self, app: ASGIApp, host: str, port: int, quiet: bool = True) -> None:
        self._host, self._requested_port = host, port
        self._config = uvicorn.Config(
            app, lifespan="off", http="h11", loop="asyncio", ws="none", log_config=None, access_log=False,
            server_header=False, limit_concurrency=64, timeout_keep_alive=5, timeout_graceful_shutdown=3)
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        if quiet:
            logging.getLogger("uvicorn").setLevel(logging.WARNING)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket is not None else self._requested_port

    def start(self) -> None:
        self._socket = _bind(self._host, self._requested_port)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HttpServerError(f"the status page on {self._host}:{self.port} did not start")
            time.sleep(0.02)
        log.info("status page on http://%s:%d/ (metrics /metrics, probes /healthz /readyz)",
                 f"[{self._host}]" if ":" in self._host else self._host, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
