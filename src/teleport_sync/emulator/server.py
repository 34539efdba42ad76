"""Run the emulator: moto's S3 server and the API on 127.0.0.1, in threads of this process.

`EmulatorServer` is used three ways: `teleport-sync emulator` (foreground), `teleport-sync demo`,
and the test suite's fixtures, which read `stats` and change `config` while it runs.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn

from .app import create_app
from .backend import Backend
from .faults import EmulatorConfig
from .stats import EmulatorStats
from .storage import S3Storage
from .webhooks import WebhookSender


class EmulatorServer:
    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        s3_port: int = 0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.stats = EmulatorStats()
        self.storage = S3Storage(self.config, self.stats, host=host, port=s3_port)
        self.backend = Backend(
            self.config, self.storage, on_signature=self.stats.signatures_issued.append
        )
        self.webhooks = WebhookSender(self.backend)
        self.backend.on_completed = self.webhooks.capture_completed
        # Bind first, so the URL is known (and the port taken) before anything starts.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound_port = self._socket.getsockname()[1]
        self.url = f"http://{host}:{bound_port}"
        self.app = create_app(self.backend, self.stats, self.url)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=2,
                lifespan="off",
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    def start(self, timeout: float = 15.0) -> Self:
        self.storage.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.webhooks.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.storage.stop()
        self._socket.close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the foreground command)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def object_bytes(self, eid: str) -> bytes:
        """The completed upload's bytes, as the server stored them."""
        return b"".join(self.storage.iter_object(eid))
