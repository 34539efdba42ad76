"""HTTP transports: TLS set up only when needed, and part bodies sent by the kernel.

`LazyTLSTransport` builds one httpx pool per URL scheme on first use, so plain-http set-ups never
pay for loading the CA bundle. `SendfileTransport` sends `FileRegion` bodies over plain-http
sockets with `os.sendfile` (the part's bytes never enter Python: no copies, no GIL, little CPU)
and hands everything else, https included, to the transport it wraps. Over TLS the bytes must be
encrypted in user space, so there the region is streamed in blocks as usual.
"""

from __future__ import annotations

import functools
import http.client
import select
import ssl
import threading
from typing import BinaryIO

import certifi
import httpx

from .filebody import FileEndedEarly, FileRegion


@functools.cache
def verified_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the process: loading the CA bundle costs ~70 ms."""
    return ssl.create_default_context(cafile=certifi.where())


class LazyTLSTransport(httpx.BaseTransport):
    """A pooled transport per URL scheme, built on first use.

    Plain-http set-ups (the emulator, a loopback test server) then never load the CA bundle;
    https always verifies against it.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._by_scheme: dict[str, httpx.HTTPTransport] = {}

    def _for(self, scheme: str) -> httpx.HTTPTransport:
        with self._lock:
            transport = self._by_scheme.get(scheme)
            if transport is None:
                # `verify` only matters for https; http gets a context that is never used.
                verify: ssl.SSLContext | bool = (
                    verified_tls_context() if scheme == "https" else False
                )
                transport = httpx.HTTPTransport(verify=verify, limits=self._limits)
                self._by_scheme[scheme] = transport
            return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._for(request.url.scheme).handle_request(request)

    def close(self) -> None:
        with self._lock:
            for transport in self._by_scheme.values():
                transport.close()
            self._by_scheme.clear()


class _IdleConnections:
    """Keep-alive connections per (host, port), at most `limit` idle per origin."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}

    def take(self, origin: tuple[str, int]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                connection = idle.pop()
            if _still_open(connection):
                return connection
            connection.close()

    def give_back(self, origin: tuple[str, int], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._limit:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or spoken to) by the server."""
    sock = connection.sock
    if sock is None:
        return False
    poller = select.poll()  # poll, not select: daemons may hold descriptors above 1024
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class SendfileTransport(httpx.BaseTransport):
    """Sends `FileRegion` PUT bodies to plain-http URLs with sendfile; delegates the rest.

    Errors are raised as the httpx exceptions the wrapped transport would raise
    (ConnectError, WriteError, ReadTimeout, ...), so callers see one behaviour. If storage
    answers before taking the whole body (an expired URL, say), that answer is returned, as
    httpcore does.
    """

    def __init__(self, fallback: httpx.BaseTransport, *, max_idle: int = 16) -> None:
        self.fallback = fallback
        self._idle = _IdleConnections(max_idle)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (
            request.url.scheme == "http"
            and request.method == "PUT"
            and isinstance(request.stream, FileRegion)
        ):
            return self._send_region(request, request.stream)
        return self.fallback.handle_request(request)

    def close(self) -> None:
        self._idle.close()
        self.fallback.close()

    # -- the sendfile path ---------------------------------------------------------------------

    def _send_region(self, request: httpx.Request, region: FileRegion) -> httpx.Response:
        # File errors (gone, unreadable) propagate as they are: they are not the network's.
        with region.open() as handle:
            return self._send_open_region(request, region, handle)

    def _send_open_region(
        self, request: httpx.Request, region: FileRegion, handle: BinaryIO
    ) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (request.url.host, request.url.port or 80)
        connection = self._idle.take(origin) or http.client.HTTPConnection(
            *origin, timeout=timeouts.get("connect")
        )
        reusable = False
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except TimeoutError as exc:
                    raise httpx.ConnectTimeout(str(exc), request=request) from exc
                except OSError as exc:
                    raise httpx.ConnectError(str(exc), request=request) from exc
            assert connection.sock is not None
            connection.sock.settimeout(timeouts.get("write"))
            try:
                # The target goes out byte for byte: presigned signatures cover the query.
                connection.putrequest(
                    request.method,
                    request.url.raw_path.decode("ascii"),
                    skip_host=True,
                    skip_accept_encoding=True,
                )
                for name, value in request.headers.raw:
                    connection.putheader(name.decode("latin-1"), value.decode("latin-1"))
                connection.endheaders()
                region.send_to(connection.sock, handle)
            except FileEndedEarly:
                raise
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc), request=request) from exc
            except OSError as exc:
                early = _answer_already_sent(connection)
                if early is None:
                    raise httpx.WriteError(str(exc), request=request) from exc
                return self._response(request, early)
            connection.sock.settimeout(timeouts.get("read"))
            try:
                answer = connection.getresponse()
                body = answer.read()
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc), request=request) from exc
            except http.client.RemoteDisconnected as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
            reusable = not answer.will_close
            return self._response(request, (answer, body))
        finally:
            if reusable:
                self._idle.give_back(origin, connection)
            else:
                connection.close()

    @staticmethod
    def _response(
        request: httpx.Request, answer: tuple[http.client.HTTPResponse, bytes]
    ) -> httpx.Response:
        raw, body = answer
        return httpx.Response(raw.status, headers=raw.getheaders(), content=body, request=request)


def _answer_already_sent(
    connection: http.client.HTTPConnection,
) -> tuple[http.client.HTTPResponse, bytes] | None:
    """The response storage sent before closing on a body it refused, if there is one."""
    sock = connection.sock
    if sock is None:
        return None
    try:
        sock.settimeout(1.0)
        answer = connection.getresponse()
        return answer, answer.read()
    except (OSError, http.client.HTTPException):
        return None
