"""S3 part storage: moto's S3 server on loopback, behind a gate that injects faults.

moto does the real S3 work (multipart uploads, ETags, `InvalidPart`, `EntityTooSmall`). The gate
is a WSGI middleware in front of it that does what moto does not: refuse expired presigned URLs
with S3's own `AccessDenied / Request has expired`, refuse PUTs without `Content-Length`, inject
500s and connection resets mid-body, and record every PUT for the tests.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import boto3
from botocore.config import Config as BotoConfig
from werkzeug.serving import BaseWSGIServer, make_server

from .faults import EmulatorConfig
from .stats import EmulatorStats

StartResponse = Callable[..., Any]
# Presigned URLs for the same part signed in the same second are identical; a per-URL id lets
# the gate expire one URL without expiring the fresh one a client asks for next.
URL_ID_PARAM = "x-emulator-url-id"
# With `opaque_etags`, part ETags are moto's with this prefix: no longer MD5-shaped, and mapped
# back at completion.
OPAQUE_PREFIX = "opaque-"


def _s3_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class StorageGate:
    """WSGI middleware: faults, expiry and bookkeeping in front of moto's S3 app."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        config: EmulatorConfig,
        stats: EmulatorStats,
        eid_for_upload: Callable[[str], str | None],
        doomed_urls: set[str],
    ) -> None:
        self._app = app
        self._config = config
        self._stats = stats
        self._eid_for_upload = eid_for_upload
        self._doomed = doomed_urls

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        upload_id = (query.get("uploadId") or [None])[0]
        part = (query.get("partNumber") or [None])[0]
        if environ["REQUEST_METHOD"] != "PUT" or upload_id is None or part is None:
            return self._app(environ, start_response)
        eid = self._eid_for_upload(upload_id)
        # The URL id is ours, not S3's: moto must not see it.
        environ["QUERY_STRING"] = "&".join(
            p
            for p in environ.get("QUERY_STRING", "").split("&")
            if not p.startswith(URL_ID_PARAM + "=")
        )
        part_no = int(part)
        path = environ.get("PATH_INFO", "")

        def answer(status: int, reason: str, body: bytes) -> list[bytes]:
            self._stats.record("put", "PUT", path, status, eid=eid, part=part_no)
            start_response(
                f"{status} {reason}",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
            )
            return [body]

        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            return answer(
                501,
                "Not Implemented",
                _s3_error("NotImplemented", "Transfer-Encoding: chunked is not supported"),
            )
        if not environ.get("CONTENT_LENGTH"):
            return answer(
                411, "Length Required", _s3_error("MissingContentLength", "Content-Length needed")
            )
        if self._is_expired(query):
            return answer(403, "Forbidden", _s3_error("AccessDenied", "Request has expired"))
        if self._config.roll(self._config.put_reset_rate):
            return self._reset_mid_body(environ, start_response, path, eid, part_no)
        if self._config.roll(self._config.put_5xx_rate):
            self._drain(environ)
            return answer(
                500,
                "Internal Server Error",
                _s3_error("InternalError", "We encountered an internal error. Please try again."),
            )

        captured: dict[str, Any] = {}
        started = time.monotonic()
        if self._config.put_delay_seconds > 0:
            time.sleep(self._config.put_delay_seconds)

        def capture_start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            captured["status"] = int(status.split()[0])
            if captured["status"] < 300 and self._config.roll(self._config.wrong_etag_rate):
                headers = [(k, v) for k, v in headers if k.lower() != "etag"]
                headers.append(("ETag", '"' + uuid.uuid4().hex + '"'))
            elif captured["status"] < 300 and self._config.opaque_etags:
                headers = [
                    (k, v.replace('"', '"' + OPAQUE_PREFIX, 1) if k.lower() == "etag" else v)
                    for k, v in headers
                ]
            return start_response(status, headers, *args)

        result = self._app(environ, capture_start)
        body = b"".join(result)
        self._stats.record(
            "put",
            "PUT",
            path,
            captured.get("status", 500),
            eid=eid,
            part=part_no,
            started=started,
            finished=time.monotonic(),
        )
        return [body]

    def _is_expired(self, query: dict[str, list[str]]) -> bool:
        url_id = (query.get(URL_ID_PARAM) or [""])[0]
        if url_id in self._doomed:
            return True
        try:
            signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=UTC
            )
            lifetime = float(query["X-Amz-Expires"][0])
        except (KeyError, ValueError):
            return True  # not a presigned URL we issued: treat as unusable
        return datetime.now(UTC).timestamp() > signed_at.timestamp() + lifetime

    @staticmethod
    def _drain(environ: dict[str, Any]) -> None:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        while remaining > 0:
            block = stream.read(min(remaining, 1 << 20))
            if not block:
                break
            remaining -= len(block)

    def _reset_mid_body(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        path: str,
        eid: str | None,
        part_no: int,
    ) -> list[bytes]:
        # Read half the body, then drop the connection with data unread, so the kernel answers
        # the client's remaining bytes with a reset, as a dying load balancer would.
        half = int(environ.get("CONTENT_LENGTH") or 0) // 2
        environ["wsgi.input"].read(half)
        self._stats.record("put", "PUT", path, 0, eid=eid, part=part_no)
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]


class S3Storage:
    """moto's S3 server on 127.0.0.1 plus a boto3 client for the emulator's own calls."""

    def __init__(
        self, config: EmulatorConfig, stats: EmulatorStats, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        # Imported here so `import teleport_sync.emulator` stays cheap without the extra.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self._config = config
        self.bucket = f"teleport-emulator-{uuid.uuid4().hex[:12]}"
        self._uploads: dict[str, str] = {}  # upload id -> eid
        self.doomed_urls: set[str] = set()
        self.started_at = time.monotonic()
        gate = StorageGate(
            DomainDispatcherApplication(create_backend_app),
            config,
            stats,
            self._uploads.get,
            self.doomed_urls,
        )

        class QuietHandler(MotoRequestHandler):
            # The default access log prints presigned URLs, signatures included.
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self._server: BaseWSGIServer = make_server(
            host, port, gate, threaded=True, request_handler=QuietHandler
        )
        self.endpoint = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="emulator-s3", daemon=True
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator-secret",
            config=BotoConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
            ),
        )

    def start(self) -> None:
        self._thread.start()
        self.client.create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def begin(self, eid: str) -> str:
        upload_id: str = self.client.create_multipart_upload(Bucket=self.bucket, Key=eid)[
            "UploadId"
        ]
        self._uploads[upload_id] = eid
        return upload_id

    def presign_part(self, eid: str, upload_id: str, part_no: int) -> tuple[str, str]:
        """A presigned PUT URL for one part, and its signature (for the secret-scan tests)."""
        url: str = self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": eid,
                "UploadId": upload_id,
                "PartNumber": part_no,
            },
            ExpiresIn=max(1, int(self._config.url_ttl_seconds)),
        )
        signature = parse_qs(url.split("?", 1)[1])["X-Amz-Signature"][0]
        url_id = uuid.uuid4().hex
        early = time.monotonic() - self.started_at < self._config.expire_urls_for_first_seconds
        if early or self._config.roll(self._config.expired_url_rate):
            self.doomed_urls.add(url_id)
        return f"{url}&{URL_ID_PARAM}={url_id}", signature

    def complete(self, eid: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=eid,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": n, "ETag": etag.replace(OPAQUE_PREFIX, "", 1)}
                    for n, etag in parts
                ]
            },
        )

    def abort(self, eid: str, upload_id: str) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=eid, UploadId=upload_id)

    def delete_object(self, eid: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=eid)

    def object_size(self, eid: str) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=eid)["ContentLength"])

    def read_range(self, eid: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        body = self.client.get_object(
            Bucket=self.bucket, Key=eid, Range=f"bytes={start}-{start + length - 1}"
        )["Body"]
        data: bytes = body.read()
        return data

    def iter_object(self, eid: str, block: int = 1 << 20) -> Iterable[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=eid)["Body"]
        while chunk := body.read(block):
            yield chunk

    def open_object(self, eid: str) -> RangedObject:
        return RangedObject(self, eid)


class RangedObject(io.RawIOBase):
    """A seekable read-only file over ranged GETs, so zipfile can read only what it needs."""

    def __init__(self, storage: S3Storage, eid: str) -> None:
        self._storage = storage
        self._eid = eid
        self._size = storage.object_size(eid)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self._size - self._pos)
        if length <= 0:
            return 0
        data = self._storage.read_range(self._eid, self._pos, length)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
