"""A hostile API for tests: a small HTTP proxy on 127.0.0.1 in front of the emulator.

Everything is passed through to the emulator (its own URL in answers is rewritten to the
proxy's, so model links come back through here too) until a test turns the proxy hostile:

- `endless`: paths containing one of these strings get a body that never ends (chunked, or
  under a `Content-Length` that lies when `endless_length` is set); `sent` counts its bytes;
- `answer`: a function of (method, path, headers) that may answer instead of the emulator
  (a 401 echoing the bearer token, say);
- `rewrite`: a function of (path, body) over JSON answers (capture names full of escapes);
- `on_request`: called with (method, path) before each request is passed on (to replace an
  input file while its model downloads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx

Answer = tuple[int, dict[str, str], bytes]
_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive", "date", "server"}
_BLOCK = b"\0" * (64 * 1024)


@dataclass
class HostileProxy:
    upstream: str
    endless: set[str] = field(default_factory=set)
    endless_length: int | None = None
    answer: Callable[[str, str, dict[str, str]], Answer | None] | None = None
    rewrite: Callable[[str, bytes], bytes] | None = None
    on_request: Callable[[str, str], None] | None = None
    sent: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._http = httpx.Client(timeout=30.0)
        self._lock = threading.Lock()

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        with self._lock:
            self.requests.append((method, path))
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        if self.on_request is not None:
            self.on_request(method, path)
        if any(part in path for part in self.endless):
            self._send_endless(handler, path)
            return
        canned = self.answer(method, path, headers) if self.answer else None
        if canned is None:
            canned = self._forward(method, path, headers, body)
        status, out_headers, out_body = canned
        handler.send_response(status)
        for key, value in out_headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(out_body)))
        handler.end_headers()
        handler.wfile.write(out_body)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        answer = self._http.request(method, self.upstream + path, headers=headers, content=body)
        out = answer.content.replace(self.upstream.encode(), self.url.encode())
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        kept.pop("content-encoding", None)  # httpx already decoded it
        if self.rewrite is not None and "json" in answer.headers.get("content-type", ""):
            out = self.rewrite(path, out)
        return answer.status_code, kept, out

    def _send_endless(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if self.endless_length is not None:
            handler.send_header("Content-Length", str(self.endless_length))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            while True:
                if self.endless_length is None:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(_BLOCK), _BLOCK))
                else:
                    handler.wfile.write(_BLOCK)
                with self._lock:
                    self.sent[path] = self.sent.get(path, 0) + len(_BLOCK)
        except OSError:
            handler.close_connection = True  # the client hung up: what it should do
