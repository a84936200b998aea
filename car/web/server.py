"""Run an ASGI app with uvicorn on a thread of the drive (or label) process, on a socket bound here.

Binding the socket ourselves gives the real port when 0 (an ephemeral port) was asked for, and the bind
error before anything else starts. The server thread never touches the control loop: it reads the hub's
newest-only mailboxes and writes into the operator's inbox.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from car.errors import CarError


class WebServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> WebServer:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise CarError(
                f"web console: cannot listen on {self.host}:{self.port} ({exc.strerror})"
            ) from None
        sock.listen(64)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", ws_ping_interval=None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="web-console", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CarError(f"web console: the server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
