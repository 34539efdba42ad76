"""A fast S3-style sink with a minimal Teleport API in front, for benchmarks only.

One process, a thread per connection, request bodies read into one reusable buffer and
discarded, so the sink costs as little CPU as a Python server can. It speaks just enough:

- `POST /oauth2/token`; `POST /api/v1/captures`; `POST .../create-upload-url/{n}`;
  `POST .../uploaded`; `GET /api/v1/captures` (teleport-sync's flow);
- `PUT /bucket/key` (curl -T); `POST ?uploads`, `PUT ?partNumber&uploadId`,
  `POST ?uploadId` (boto3's s3transfer).

By default ETags are not MD5s (as with S3 SSE-KMS), so the sink never hashes. With `--md5-etags`
it answers each part with the hex MD5 of its body, as S3 does with its default encryption: then
clients that verify parts (teleport-sync does) pay for it, as they would against real S3. It
records when each upload's first and last body byte arrived (`GET /_sink/log`).

    python bench/sink.py --port 0 --chunk-size 33554432   # prints "listening on PORT"
    python bench/sink.py ... --tls-cert cert.pem --tls-key key.pem   # the same over https
    python bench/sink.py ... --md5-etags   # part ETags are the MD5 of the body, as on S3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BUFFER = 1 << 20


class Sink:
    def __init__(self, chunk_size: int, md5_etags: bool = False) -> None:
        self.chunk_size = chunk_size
        self.md5_etags = md5_etags
        self.lock = threading.Lock()
        self.captures: dict[str, dict[str, object]] = {}
        self.log: list[dict[str, object]] = []  # one entry per body: kind, bytes, first, last


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers are written in pieces; without this, Nagle and delayed ACKs add 40 ms to each.
    disable_nagle_algorithm = True
    sink: Sink
    port: int
    scheme: str
    # Where clients reach this sink (the upload URLs it hands out point there): itself, or a
    # proxy in front of it (bench/wan.py's delay line).
    public: str

    def log_message(self, *args: object) -> None:  # quiet
        pass

    # -- helpers -----------------------------------------------------------------------------

    def _drain(self, kind: str) -> str:
        """Read the body and throw it away; its ETag: an MD5 or an opaque token."""
        remaining = int(self.headers.get("Content-Length") or 0)
        buffer = memoryview(bytearray(BUFFER))
        digest = hashlib.md5(usedforsecurity=False) if self.sink.md5_etags else None
        total = 0
        first = None
        while remaining > 0:
            # The first read takes what has arrived (`readinto1`), so `first` is when the body
            # began: a full 1 MiB read waited ~0.6 s for a connection moving 1.6 MiB/s (a long
            # path), which the wire time then left out.
            read = self.rfile.readinto1 if first is None else self.rfile.readinto
            n = read(buffer[: min(BUFFER, remaining)])
            if not n:
                break
            if first is None:
                first = time.time()
            remaining -= n
            total += n
            if digest is not None:
                digest.update(buffer[:n])
        with self.sink.lock:
            self.sink.log.append(
                {"kind": kind, "bytes": total, "first": first, "last": time.time()}
            )
        return digest.hexdigest() if digest is not None else f"sink-{uuid.uuid4().hex[:12]}"

    def _send(
        self,
        status: int,
        body: bytes = b"",
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, value: object, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode())

    def _body_json(self) -> dict[str, object]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _capture(self, eid: str, state: str) -> dict[str, object]:
        now = "2026-01-01T00:00:00Z"
        keys = [
            "sid",
            "error_reason",
            "state_description",
            "error_reason_slug",
            "preview_url",
            "viewer_url",
            "share_url",
            "share_link",
            "gif_url",
            "video_url",
            "share_video_url",
            "uploaded",
        ]
        out: dict[str, object] = dict.fromkeys(keys)
        out.update(
            eid=eid,
            name=str(self.sink.captures[eid]["name"]),
            created=now,
            state=state,
            preview_urls={},
            is_public=False,
        )
        return out

    # -- verbs -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/v1/captures":
            # Uploaded captures read as READY at once: the benchmarks measure the client.
            query = parse_qs(urlsplit(self.path).query)
            limit, offset = int(query.get("limit", ["25"])[0]), int(query.get("offset", ["0"])[0])
            with self.sink.lock:
                eids = list(self.sink.captures)[offset : offset + limit]
                states = {e: self.sink.captures[e].get("state", "CREATED") for e in eids}
            self._json([self._capture(e, str(states[e])) for e in eids])
        elif path == "/_sink/log":
            with self.sink.lock:
                self._json(self.sink.log)
        else:
            self._json({"detail": "not found"}, 404)

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/api/v1/captures/"):
            # The capture's final name, as the API's edit answers it: a real round trip.
            body = self._body_json()
            eid = url.path.split("/")[4]
            with self.sink.lock:
                capture = self.sink.captures.get(eid)
                if capture is None:
                    self._json({"detail": "not found"}, 404)
                    return
                capture["name"] = body.get("name", capture["name"])
                state = str(capture.get("state", "CREATED"))
            self._json(self._capture(eid, state))
            return
        query = parse_qs(url.query)
        kind = "part" if "partNumber" in query else "object"
        etag = self._drain(kind)
        self._send(200, headers={"ETag": f'"{etag}"'}, ctype="text/plain")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        if path == "/oauth2/token":
            self._body_json() if "json" in (
                self.headers.get("Content-Type") or ""
            ) else self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._json(
                {
                    "access_token": "bench-token-" + uuid.uuid4().hex,
                    "expires_in": 3600,
                    "token_type": "bearer",
                }
            )
        elif path == "/api/v1/captures":
            body = self._body_json()
            eid = uuid.uuid4().hex[:16]
            size = int(body["bytesize"])  # type: ignore[arg-type]
            with self.sink.lock:
                self.sink.captures[eid] = {"name": body["name"], "bytesize": size}
            parts = max(1, math.ceil(size / self.sink.chunk_size))
            self._json({"eid": eid, "chunk_size": self.sink.chunk_size, "num_parts": parts})
        elif path.endswith("/uploaded"):
            self._body_json()
            eid = path.split("/")[4]
            with self.sink.lock:
                self.sink.captures[eid]["state"] = "READY"
            self._json(self._capture(eid, "UPLOADED"))
        elif "/create-upload-url/" in path:
            self._body_json()
            eid, part = path.split("/")[4], path.rsplit("/", 1)[1]
            url_out = (
                f"{self.public}/bucket/{eid}?partNumber={part}"
                f"&uploadId=u-{eid}&X-Amz-Signature=bench"
            )
            self._json({"eid": eid, "upload_url": url_out, "chunk_size": self.sink.chunk_size})
        elif "uploads" in query:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = path.split("/", 2)[2]
            xml = (
                "<InitiateMultipartUploadResult><Bucket>bucket</Bucket>"
                f"<Key>{key}</Key><UploadId>u-{uuid.uuid4().hex}</UploadId>"
                "</InitiateMultipartUploadResult>"
            )
            self._send(200, xml.encode(), "application/xml")
        elif "uploadId" in query:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            xml = (
                "<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key>"
                '<ETag>"sink-complete"</ETag></CompleteMultipartUploadResult>'
            )
            self._send(200, xml.encode(), "application/xml")
        else:
            self._json({"detail": "not found"}, 404)


class WideHTTPServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a client opening dozens of connections at once (a
    # wide window of parts) had SYNs dropped, and each dropped one waited a second for its
    # retransmission, a stall that was the sink's, not the client's.
    request_queue_size = 1024


def serve(
    port: int,
    chunk_size: int,
    tls: tuple[str, str] | None = None,
    md5_etags: bool = False,
    host: str = "127.0.0.1",
    public: str | None = None,
) -> ThreadingHTTPServer:
    sink = Sink(chunk_size, md5_etags)
    server = WideHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    Handler.sink = sink
    Handler.port = server.server_address[1]
    Handler.scheme = "https" if tls else "http"
    Handler.public = public or f"{Handler.scheme}://127.0.0.1:{Handler.port}"
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM) ...")
    parser.add_argument("--tls-key", help="... and this key")
    parser.add_argument("--md5-etags", action="store_true", help="answer parts with MD5 ETags")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--public", help="base URL clients reach it by (a proxy in front)")
    args = parser.parse_args()
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    server = serve(args.port, args.chunk_size, tls, args.md5_etags, args.host, args.public)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
