"""HTTP transports: TLS set up only when needed, and part bodies sent by the kernel.

`PlainHTTPTransport` speaks plain http with the standard library's HTTP/1.1 client, which lets
part bodies (`FileRegion`) go out by `os.sendfile`: their bytes never enter Python (no copies,
no GIL, little CPU). It hands https to `LazyTLSTransport`: httpx's own pools (httpcore), built
on first use, so plain-http set-ups (the emulator, on-premises S3 over http, benchmarks) never
load httpcore or the CA bundle. Over TLS the bytes must be encrypted in user space, so there a
region is streamed in blocks. Proxies named in the environment are honoured (loopback never goes
through one); plain http through a proxy also takes httpx's pools, without sendfile.
"""

from __future__ import annotations

import functools
import http.client
import os
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import certifi
import httpx

from ..config import is_loopback_host
from .filebody import FileEndedEarly, FileRegion

# Response bodies are read in blocks of this size.
READ_BLOCK = 1 << 16
# What every request of ours calls us (the API client's and the token request's headers).
USER_AGENT = "teleport-sync"


@functools.cache
def verified_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the process: loading the CA bundle costs ~70 ms.

    The CA bundle is certifi's unless `SSL_CERT_FILE` or `SSL_CERT_DIR` names another, as for
    curl, requests and httpx: storage behind a private CA (on-premises S3) is then trusted
    the way the rest of the machine trusts it.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return ssl.create_default_context(cafile=certifi.where())


class EnvironmentProxies:
    """The proxies named by `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case),
    read once, as curl and httpx read them.

    httpx ignores these once a client is given its own transport, as ours are, so the
    transports below ask this instead.
    """

    def __init__(self) -> None:
        self._proxies = urllib.request.getproxies_environment()

    def for_url(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or is_loopback_host(url.host):  # a remote proxy cannot reach our loopback
            return None
        if urllib.request.proxy_bypass_environment(url.host, self._proxies):
            return None
        return proxy


class LazyTLSTransport(httpx.BaseTransport):
    """A pooled httpx transport per URL scheme and proxy, built on first use.

    Plain-http set-ups (the emulator, a loopback test server) then never load the CA bundle;
    https always verifies against it. Proxies come from the environment (`EnvironmentProxies`).
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._proxies = EnvironmentProxies()
        self._pools: dict[tuple[str, str | None], httpx.HTTPTransport] = {}

    def _for(self, scheme: str, proxy: str | None) -> httpx.HTTPTransport:
        with self._lock:
            transport = self._pools.get((scheme, proxy))
            if transport is None:
                # `verify` only matters for https; http gets a context that is never used.
                verify: ssl.SSLContext | bool = (
                    verified_tls_context() if scheme == "https" else False
                )
                transport = httpx.HTTPTransport(verify=verify, limits=self._limits, proxy=proxy)
                self._pools[(scheme, proxy)] = transport
            return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        return self._for(url.scheme, self._proxies.for_url(url)).handle_request(request)

    def close(self) -> None:
        with self._lock:
            for transport in self._pools.values():
                transport.close()
            self._pools.clear()


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


class PlainHTTPTransport(httpx.BaseTransport):
    """Plain-http requests over the standard library's HTTP/1.1 client; https and proxied
    requests to `tls`.

    `FileRegion` bodies go out by sendfile; other bodies are written as they come, with chunked
    framing when httpx asked for it. Responses stream, so downloads stay flat in memory, and a
    connection is kept alive once its response has been read to the end.

    Errors are raised as the httpx exceptions httpcore would raise (ConnectError, WriteError,
    ReadTimeout, ...), so callers see one behaviour whatever the scheme. If the server answers
    before taking the whole body (storage refusing an expired URL, say), that answer is
    returned, as httpcore does.
    """

    def __init__(self, tls: httpx.BaseTransport, *, max_idle: int = 16) -> None:
        self.tls = tls
        self._idle = _IdleConnections(max_idle)
        self._proxies = EnvironmentProxies()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http" or self._proxies.for_url(request.url):
            # https, and plain http through a proxy: httpx's pools know both.
            return self.tls.handle_request(request)
        body = request.stream
        if isinstance(body, FileRegion):
            # File errors (gone, unreadable) propagate as they are: they are not the network's.
            with body.open() as handle:
                return self._exchange(request, lambda sock: body.send_to(sock, handle))
        return self._exchange(request, lambda sock: _write_body(request, sock))

    def close(self) -> None:
        self._idle.close()
        self.tls.close()

    def _exchange(
        self, request: httpx.Request, write_body: Callable[[socket.socket], None]
    ) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (request.url.host, request.url.port or 80)
        connection = self._idle.take(origin) or http.client.HTTPConnection(
            *origin, timeout=timeouts.get("connect")
        )
        handed_over = False
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except TimeoutError as exc:
                    raise httpx.ConnectTimeout(str(exc), request=request) from exc
                except OSError as exc:
                    raise httpx.ConnectError(str(exc), request=request) from exc
            sock: socket.socket = connection.sock  # type: ignore[assignment]
            sock.settimeout(timeouts.get("write"))
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
                write_body(sock)
            except FileEndedEarly:
                raise
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc), request=request) from exc
            except OSError as exc:
                early = _answer_already_sent(connection, request)
                if early is None:
                    raise httpx.WriteError(str(exc), request=request) from exc
                return early
            sock.settimeout(timeouts.get("read"))
            with _reading(request):
                answer = connection.getresponse()
            stream = _ResponseStream(request, answer, connection, origin, self._idle)
            handed_over = True
            return httpx.Response(
                answer.status, headers=answer.getheaders(), stream=stream, request=request
            )
        finally:
            if not handed_over:
                connection.close()


def _write_body(request: httpx.Request, sock: socket.socket) -> None:
    chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    for chunk in request.stream:  # type: ignore[union-attr]
        if not chunk:
            continue
        if chunked:
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            sock.sendall(chunk)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


@contextmanager
def _reading(request: httpx.Request) -> Iterator[None]:
    """Map errors while reading a response to httpx's."""
    try:
        yield
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    except http.client.RemoteDisconnected as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc


class _ResponseStream(httpx.SyncByteStream):
    """A response body read as it is consumed; its connection goes back to the pool at the end."""

    def __init__(
        self,
        request: httpx.Request,
        answer: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        origin: tuple[str, int],
        idle: _IdleConnections,
    ) -> None:
        self._request = request
        self._answer = answer
        self._connection: http.client.HTTPConnection | None = connection
        self._origin = origin
        self._idle = idle

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with _reading(self._request):
                block = self._answer.read(READ_BLOCK)
            if not block:
                return
            yield block

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._answer.isclosed() and not self._answer.will_close:
            self._idle.give_back(self._origin, connection)  # read to the end: reusable
        else:
            connection.close()


def _answer_already_sent(
    connection: http.client.HTTPConnection, request: httpx.Request
) -> httpx.Response | None:
    """The whole response the server sent before closing on a body it refused, if any."""
    sock = connection.sock
    if sock is None:
        return None
    try:
        sock.settimeout(1.0)
        answer = connection.getresponse()
        body = answer.read()
    except (OSError, http.client.HTTPException):
        return None
    return httpx.Response(answer.status, headers=answer.getheaders(), content=body, request=request)
