"""The console's HTTP server: uvicorn on its own thread, bound before it starts."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Self

import uvicorn

from ..config import split_listen
from ..logging import REDACTOR, get_logger
from .app import create_app
from .facade import Console, DaemonLink
from .security import Guard

log = get_logger("teleport_sync.web")


class UvicornLines(logging.Handler):
    """uvicorn's own log records as our log lines. What a client did (an invalid request, a
    connection dropped) is one line at info, with no traceback; an error of ours is one line
    at error, its traceback inside it (a JSON string under `[log] format = "json"`)."""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        fields = {"error": f"{type(error).__name__}: {error}"} if error else {}
        if record.levelno >= logging.ERROR:
            log.error("console: " + record.getMessage(), exc_info=record.exc_info, **fields)
        elif record.levelno >= logging.WARNING:
            log.info("console client refused: " + record.getMessage(), **fields)
        else:
            log.debug("console: " + record.getMessage(), **fields)


def _route_uvicorn_logs() -> None:
    uvicorn_log = logging.getLogger("uvicorn")
    if not any(isinstance(h, UvicornLines) for h in uvicorn_log.handlers):
        uvicorn_log.addHandler(UvicornLines())
    uvicorn_log.propagate = False


class ConsoleServer:
    """Serve the console for `link` on `listen` ("host:port"; port 0 picks a free one)."""

    def __init__(
        self, link: DaemonLink, listen: str, token: str | None = None, *, vendor: Path | None = None
    ) -> None:
        host, port = split_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(f"cannot listen on {listen} ([web] listen): {exc}") from exc
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}/"
        REDACTOR.add_secret(token)
        _route_uvicorn_logs()
        self.console = Console(link)
        self.guard = Guard(host=host, port=self.port, token=token)
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.console, self.guard, vendor=vendor),
                log_level="warning",
                log_config=None,  # uvicorn's lines go through ours (`UvicornLines`), as JSON
                access_log=False,
                timeout_graceful_shutdown=2,
                lifespan="off",
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="web", daemon=True
        )

    def start(self, timeout: float = 15.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web console did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
