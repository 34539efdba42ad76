"""Transports over real loopback sockets: the sendfile path, its fallbacks and its errors."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from teleport_sync.api import TransientError, build_client
from teleport_sync.api.filebody import FileEndedEarly, FileRegion, md5_of_region
from teleport_sync.api.transport import (
    EnvironmentProxies,
    LazyTLSTransport,
    PlainHTTPTransport,
    verified_tls_context,
)
from teleport_sync.emulator.faults import MIB
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.models import NewCaptureInput, UploadedPart

from .helpers import set_knobs


@dataclass
class Seen:
    """What the recording server received: one entry per request."""

    client_ports: list[int] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[tuple[str, Seen, dict[str, bool]]]:
    """A keep-alive HTTP/1.1 server that records PUTs and serves `GET /blob/N` (N bytes, chunked
    with `?chunked`); with `mode["refuse"]` PUTs get a 403 and a close, body unread."""
    seen = Seen()
    mode = {"refuse": False}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_PUT(self) -> None:
            seen.client_ports.append(self.client_address[1])
            seen.targets.append(self.path)
            seen.headers.append(dict(self.headers.items()))
            if mode["refuse"]:
                body = b"<Error><Code>AccessDenied</Code></Error>"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            if self.headers.get("Transfer-Encoding") == "chunked":
                data = b""
                while size := int(self.rfile.readline(), 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                data = self.rfile.read(int(self.headers["Content-Length"]))
            seen.bodies.append(data)
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            seen.client_ports.append(self.client_address[1])
            size = int(self.path.split("/")[2].split("?")[0])
            data = bytes(i % 256 for i in range(size))
            self.send_response(200)
            if "chunked" in self.path:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, size, 100_000):
                    piece = data[start : start + 100_000]
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen, mode
    finally:
        server.shutdown()
        server.server_close()


class CountingFallback(LazyTLSTransport):
    """The usual fallback, counting what reaches it."""

    def __init__(self) -> None:
        super().__init__(httpx.Limits())
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return super().handle_request(request)


def put(client: httpx.Client, url: str, body: FileRegion) -> httpx.Response:
    request = client.build_request("PUT", url, headers={"Content-Length": str(body.length)})
    request.stream = body
    return client.send(request)


def test_file_region_goes_out_by_sendfile_on_one_kept_alive_connection(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]]
) -> None:
    url, seen, _ = recorder
    data = os.urandom(3 * MIB + 12345)
    path = tmp_path / "capture.mp4"
    path.write_bytes(data)
    progress: list[int] = []
    fallback = CountingFallback()
    with httpx.Client(transport=PlainHTTPTransport(fallback)) as client:
        regions = [(0, MIB), (MIB, 2 * MIB + 12345)]
        for offset, length in regions:
            body = FileRegion(path, offset, length, on_progress=progress.append)
            target = f"{url}/bucket/key?partNumber=1&X-Amz-Signature=a%2Fb%3D"
            response = put(client, target, body)
            assert response.status_code == 200
            assert (
                response.headers["ETag"].strip('"')
                == hashlib.md5(data[offset : offset + length]).hexdigest()
            )
            assert body.sent == length
    assert fallback.calls == 0  # never left the sendfile path
    assert seen.bodies == [data[:MIB], data[MIB:]]
    assert seen.targets[0] == "/bucket/key?partNumber=1&X-Amz-Signature=a%2Fb%3D"  # verbatim
    assert seen.client_ports[0] == seen.client_ports[1]  # one connection, reused
    assert sum(progress) == len(data)
    assert seen.headers[0]["Content-Length"] == str(MIB)


def test_stale_idle_connection_is_replaced(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]]
) -> None:
    url, seen, mode = recorder
    path = tmp_path / "capture.zip"
    path.write_bytes(b"x" * 1000)
    with httpx.Client(transport=PlainHTTPTransport(CountingFallback())) as client:
        mode["refuse"] = True  # the server answers and closes
        assert put(client, f"{url}/b/k", FileRegion(path, 0, 1000)).status_code == 403
        mode["refuse"] = False
        assert put(client, f"{url}/b/k", FileRegion(path, 0, 1000)).status_code == 200
    assert seen.bodies == [b"x" * 1000]
    assert seen.client_ports[0] != seen.client_ports[1]


def test_an_answer_sent_before_the_body_was_read_is_returned(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]]
) -> None:
    """Storage refusing an expired URL answers without reading 64 MiB: we get its 403."""
    url, _, mode = recorder
    mode["refuse"] = True
    path = tmp_path / "big.mp4"
    with path.open("wb") as handle:
        handle.truncate(64 * MIB)
    with httpx.Client(transport=PlainHTTPTransport(CountingFallback())) as client:
        response = put(client, f"{url}/b/k", FileRegion(path, 0, 64 * MIB))
    assert response.status_code == 403
    assert b"AccessDenied" in response.content


def test_https_goes_to_the_tls_transport() -> None:
    seen: list[str] = []

    def tls(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    with httpx.Client(transport=PlainHTTPTransport(httpx.MockTransport(tls))) as client:
        assert client.get("https://storage.example/k?X-Amz-Signature=s").status_code == 204
    assert seen == ["https://storage.example/k?X-Amz-Signature=s"]


def test_plain_and_chunked_bodies_and_streamed_responses(
    recorder: tuple[str, Seen, dict[str, bool]],
) -> None:
    """Bytes, a generator (sent chunked), and a 3 MiB chunked download read in blocks, all on
    one kept-alive connection."""
    url, seen, _ = recorder
    fallback = CountingFallback()
    with httpx.Client(transport=PlainHTTPTransport(fallback)) as client:
        assert client.put(f"{url}/b/k", content=b"plain bytes").status_code == 200
        assert client.put(f"{url}/b/k", content=(b for b in [b"gen", b"", b"erated"])).is_success
        with client.stream("GET", f"{url}/blob/{3 * MIB}?chunked=1") as response:
            blocks = list(response.iter_raw())
        assert client.get(f"{url}/blob/10").content == bytes(range(10))
    assert fallback.calls == 0
    assert seen.bodies == [b"plain bytes", b"generated"]
    assert seen.headers[1].get("Transfer-Encoding") == "chunked"
    assert b"".join(blocks) == bytes(i % 256 for i in range(3 * MIB))
    assert len(blocks) > 1  # streamed, not read whole
    assert len(set(seen.client_ports)) == 1


def test_file_region_streams_in_blocks_when_iterated(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]]
) -> None:
    """The https path iterates the region: same bytes, blocks no larger than block_size."""
    url, seen, _ = recorder
    data = os.urandom(5 * 1000 + 7)
    path = tmp_path / "capture.zip"
    path.write_bytes(data)
    body = FileRegion(path, 1000, 4007, block_size=1000)
    assert [len(b) for b in body] == [1000, 1000, 1000, 1000, 7]
    body = FileRegion(path, 1000, 4007, block_size=1000)
    with httpx.Client(transport=LazyTLSTransport(httpx.Limits())) as client:
        assert put(client, f"{url}/b/k", body).status_code == 200
    assert seen.bodies == [data[1000:]]
    assert body.sent == 4007


def test_a_truncated_file_is_a_file_problem_not_a_network_one(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]]
) -> None:
    url, _, _ = recorder
    path = tmp_path / "capture.mp4"
    path.write_bytes(b"y" * 100)
    with httpx.Client(transport=PlainHTTPTransport(CountingFallback())) as client:
        with pytest.raises(FileEndedEarly, match="ended 900 bytes early"):
            put(client, f"{url}/b/k", FileRegion(path, 0, 1000))
        with pytest.raises(FileNotFoundError):
            put(client, f"{url}/b/k", FileRegion(tmp_path / "gone.mp4", 0, 10))
    with pytest.raises(FileEndedEarly):
        list(FileRegion(path, 50, 100))


def test_refused_connection_is_a_transport_error(tmp_path: Path) -> None:
    path = tmp_path / "capture.mp4"
    path.write_bytes(b"z" * 10)
    with (
        httpx.Client(transport=PlainHTTPTransport(CountingFallback())) as client,
        pytest.raises(httpx.ConnectError),
    ):
        put(client, "http://127.0.0.1:9/b/k", FileRegion(path, 0, 10))


def test_md5_of_region(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert md5_of_region(path, 0, len(data)) == hashlib.md5(data).hexdigest()
    assert md5_of_region(path, MIB - 3, MIB, block_size=4096) == (
        hashlib.md5(data[MIB - 3 : 2 * MIB - 3]).hexdigest()
    )
    assert md5_of_region(path, 0, 0) == hashlib.md5(b"").hexdigest()
    with pytest.raises(FileEndedEarly):
        md5_of_region(path, len(data) - 1, 2)
    stopped = threading.Event()
    stopped.set()
    assert md5_of_region(path, 0, len(data), stop=stopped) == ""  # cut short: no digest


def test_parts_by_sendfile_to_the_emulator_under_resets_and_expiry(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Real storage (moto behind the fault gate): resets mid-body and expired URLs surface as
    retryable errors, and what finally lands is the file."""
    data = os.urandom(17 * MIB)
    path = tmp_path / "capture.mp4"
    path.write_bytes(data)
    client = build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
    )
    with client:
        created = client.create_capture(
            NewCaptureInput(name="sendfile", bytesize=len(data), input_data_format="video")
        )
        set_knobs(emulator, put_reset_rate=1.0)
        url = client.create_upload_url(created.eid, 1, len(data)).upload_url
        with pytest.raises(TransientError, match=r"WriteError|ReadError|RemoteProtocolError"):
            client.put_part(
                url, FileRegion(path, 0, created.chunk_size), created.chunk_size, doing="part 1"
            )
        set_knobs(emulator, put_reset_rate=0.0, expired_url_rate=1.0)
        url = client.create_upload_url(created.eid, 1, len(data)).upload_url
        with pytest.raises(Exception, match="expired"):
            client.put_part(
                url, FileRegion(path, 0, created.chunk_size), created.chunk_size, doing="part 1"
            )
        set_knobs(emulator, expired_url_rate=0.0)
        parts = []
        for number in range(1, created.num_parts + 1):
            offset = (number - 1) * created.chunk_size
            length = min(created.chunk_size, len(data) - offset)
            url = client.create_upload_url(created.eid, number, len(data)).upload_url
            etag = client.put_part(url, FileRegion(path, offset, length), length, doing="part")
            assert etag.strip('"') == hashlib.md5(data[offset : offset + length]).hexdigest()
            parts.append(UploadedPart(number=number, etag=etag))
        client.complete_upload(created.eid, parts)
    assert emulator.object_bytes(created.eid) == data


def test_https_is_verified_and_plain_http_needs_no_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed https server is refused unless SSL_CERT_FILE names its certificate; the CA
    bundle is loaded only for https."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"hi")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    verified_tls_context.cache_clear()
    try:
        with (
            httpx.Client(transport=LazyTLSTransport(httpx.Limits())) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.get(f"https://127.0.0.1:{server.server_port}/")
        assert verified_tls_context.cache_info().currsize == 1

        # A private CA named by SSL_CERT_FILE (as curl and httpx honour it) is trusted.
        verified_tls_context.cache_clear()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        with httpx.Client(transport=LazyTLSTransport(httpx.Limits())) as client:
            assert client.get(f"https://127.0.0.1:{server.server_port}/").text == "hi"
        monkeypatch.delenv("SSL_CERT_FILE")
    finally:
        server.shutdown()
        server.server_close()

    verified_tls_context.cache_clear()
    with (
        EmulatorServer() as emulator,
        httpx.Client(transport=LazyTLSTransport(httpx.Limits())) as client,
    ):
        assert client.get(f"{emulator.url}/_emulator/health").status_code == 200
    assert verified_tls_context.cache_info().currsize == 0  # plain http loaded no CA bundle


def test_proxies_named_in_the_environment_are_used_except_for_loopback_and_no_proxy(
    tmp_path: Path, recorder: tuple[str, Seen, dict[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder plays the proxy: a part for a remote storage host reaches it in absolute
    form, body intact; NO_PROXY hosts and loopback are never proxied."""
    proxy_url, seen, _ = recorder
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "direct.test")
    data = os.urandom(MIB + 3)
    path = tmp_path / "capture.mp4"
    path.write_bytes(data)

    with httpx.Client(transport=PlainHTTPTransport(LazyTLSTransport(httpx.Limits()))) as client:
        target = "http://storage.test/bucket/k?partNumber=1&X-Amz-Signature=s"
        assert put(client, target, FileRegion(path, 0, len(data))).status_code == 200
    assert seen.targets == [target]
    assert seen.bodies == [data]

    proxies = EnvironmentProxies()
    assert proxies.for_url(httpx.URL("http://storage.test/x")) == proxy_url
    assert proxies.for_url(httpx.URL("http://direct.test/x")) is None
    assert proxies.for_url(httpx.URL("http://127.0.0.1:9/x")) is None
    assert proxies.for_url(httpx.URL("http://[::1]:9/x")) is None
    assert proxies.for_url(httpx.URL("http://localhost/x")) is None
    assert proxies.for_url(httpx.URL("https://storage.test/x")) is None  # no HTTPS_PROXY set
