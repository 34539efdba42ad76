"""The API client against the emulator over real loopback HTTP, plus branch tests."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import httpx
import pytest

from teleport_sync.api import (
    AuthenticationError,
    ClientCredentialsAuth,
    RequestRejected,
    TeleportClient,
    TransientError,
    UploadUrlExpired,
    build_client,
)
from teleport_sync.emulator.faults import MIB, EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.models import NewCaptureInput, UploadedPart
from teleport_sync.retry import RetryPolicy

from .conftest import FakeClock


def client_for(emulator: EmulatorServer, clock: FakeClock | None = None) -> TeleportClient:
    return build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
        clock=clock,
        policy=RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05),
    )


def zip_of_images(count: int = 3, pad: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"img/{i:03d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(1024))
        if pad:
            archive.writestr("padding.bin", os.urandom(pad))
    return buffer.getvalue()


def upload_bytes(client: TeleportClient, name: str, data: bytes, fmt: str) -> str:
    created = client.create_capture(
        NewCaptureInput(name=name, bytesize=len(data), input_data_format=fmt)
    )
    parts = []
    for number in range(1, created.num_parts + 1):
        url = client.create_upload_url(created.eid, number, len(data)).upload_url
        chunk = data[(number - 1) * created.chunk_size : number * created.chunk_size]
        etag = client.put_part(url, iter([chunk]), len(chunk), doing=f"part {number}")
        assert etag.strip('"') == hashlib.md5(chunk).hexdigest()
        parts.append(UploadedPart(number=number, etag=etag))
    done = client.complete_upload(created.eid, reversed(parts))  # the client sorts them
    assert done.state == "UPLOADED"
    return created.eid


def test_whole_flow_token_to_model_download(emulator: EmulatorServer, tmp_path: Path) -> None:
    data = zip_of_images(pad=11 * MIB)  # two parts of 8 MiB
    with client_for(emulator) as client:
        eid = upload_bytes(client, "scan.zip", data, "bulk-images")
        assert emulator.object_bytes(eid) == data
        assert emulator.stats.successful_puts(eid) == {1: 1, 2: 1}

        emulator.backend.monotonic = lambda: 10**9  # processing is done
        capture = client.find_capture(eid)
        assert capture is not None and capture.state == "READY" and capture.sid
        metadata = client.metadata(capture.sid, profiles=["ply"])
        assert len(metadata.models) == 1
        target = tmp_path / "out" / "scan.ply"
        size = client.download(
            metadata.models[0].url, target, expected_size=metadata.models[0].size
        )
    content = target.read_bytes()
    assert size == len(content) == metadata.models[0].size
    assert content.startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert b"property float f_dc_0" in content and b"property float rot_3" in content
    assert not target.with_name("scan.ply.part").exists()


def test_invalid_input_ends_failed_with_a_reason(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        eid = upload_bytes(client, "fake.mp4", os.urandom(1000), "video")
        emulator.backend.monotonic = lambda: 10**9
        capture = client.find_capture(eid)
    assert capture is not None
    assert capture.state == "FAILED" and capture.error_reason_slug == "invalid-video"


def test_state_names_ignore_case() -> None:
    from teleport_sync.models import is_terminal

    assert is_terminal("READY") and is_terminal("ready") and is_terminal("Failed")
    assert not is_terminal("PROCESSING") and not is_terminal(None)
    from teleport_sync.models import awaiting_upload

    assert awaiting_upload("CREATED") and awaiting_upload("uploading")
    assert not awaiting_upload("UPLOADED") and not awaiting_upload(None)


def test_listing_survives_a_server_that_caps_the_page_size() -> None:
    captures = [
        {"eid": f"e{i}", "name": "n", "created": "2026-01-01T00:00:00", "state": "READY"}
        for i in range(60)
    ]
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        offset = int(request.url.params["offset"])
        asked.append(offset)
        return httpx.Response(200, json=captures[offset : offset + 25])  # caps at 25

    with _mock_client(handler, FakeClock()) as client:
        listed = list(client.iter_captures(page_size=100))
    assert [c.eid for c in listed] == [c["eid"] for c in captures]
    assert asked == [0, 25, 50]
    assert listed[0].created.tzinfo is not None  # a zone-less time is taken as UTC


def test_listing_pages_until_a_short_page(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        eids = {
            client.create_capture(
                NewCaptureInput(name=f"c{i}", bytesize=10, input_data_format="video")
            ).eid
            for i in range(7)
        }
        pages_before = emulator.stats.count("api", "GET", "/api/v1/captures")
        listed = [c.eid for c in client.iter_captures(page_size=3)]
        pages = emulator.stats.count("api", "GET", "/api/v1/captures") - pages_before
    assert sorted(listed) == sorted(eids)
    assert pages == 3  # 3 + 3 + 1


def test_rename_and_delete(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        eid = client.create_capture(
            NewCaptureInput(name="old", bytesize=10, input_data_format="video")
        ).eid
        assert client.rename_capture(eid, "new").name == "new"
        client.delete_capture(eid)
        assert client.find_capture(eid) is None


def test_token_is_cached_and_refreshed_before_expiry(emulator: EmulatorServer) -> None:
    clock = FakeClock()
    with client_for(emulator, clock) as client:
        client.list_captures()
        client.list_captures()
        assert len(emulator.stats.tokens_issued) == 1
        clock.advance(3600 - 59)  # inside the 60 s refresh margin
        client.list_captures()
    assert len(emulator.stats.tokens_issued) == 2


def test_a_401_refreshes_the_token_once_and_retries(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        client.list_captures()
        emulator.backend.tokens.clear()  # the server forgets every token
        assert client.list_captures() == []
    assert len(emulator.stats.tokens_issued) == 2
    statuses = [c.status for c in emulator.stats.snapshot() if c.kind == "api"]
    assert statuses == [200, 401, 200]


def test_wrong_secret_is_an_authentication_error(emulator: EmulatorServer) -> None:
    client = build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret="wrong-secret-value",
    )
    with client, pytest.raises(AuthenticationError, match="authentication failed") as info:
        client.list_captures()
    assert "wrong-secret-value" not in str(info.value)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=7, processing_delay_seconds=1.0)


def test_503_with_retry_after_is_honoured(emulator: EmulatorServer) -> None:
    emulator.config.api_503_retry_after_rate = 0.5
    emulator.config.retry_after_seconds = 2
    clock = FakeClock()
    with client_for(emulator, clock) as client:
        for _ in range(10):
            client.list_captures()
    statuses = [c.status for c in emulator.stats.snapshot() if c.kind == "api"]
    assert statuses.count(503) >= 3 and statuses.count(200) == 10
    assert clock.sleeps and all(s == 2 for s in clock.sleeps)
    assert len(clock.sleeps) == statuses.count(503)


def test_a_422_is_rendered_readably(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client, pytest.raises(RequestRejected) as info:
        client._request("POST", "/api/v1/captures", "creating a capture", json={"name": 5})
    message = str(info.value)
    assert "HTTP 422" in message
    assert "body.name: Input should be a valid string" in message
    assert "body.bytesize: Field required" in message


def test_an_expired_upload_url_is_typed(emulator: EmulatorServer) -> None:
    emulator.config.expired_url_rate = 1.0
    with client_for(emulator) as client:
        eid = client.create_capture(
            NewCaptureInput(name="x", bytesize=10, input_data_format="video")
        ).eid
        url = client.create_upload_url(eid, 1, 10).upload_url
        with pytest.raises(UploadUrlExpired, match="Request has expired"):
            client.put_part(url, iter([b"0123456789"]), 10, doing="part 1")
        # The URL must not leak into the message: its query string is a credential.
        try:
            client.put_part(url, iter([b"0123456789"]), 10, doing="part 1")
        except UploadUrlExpired as exc:
            assert "X-Amz-Signature" not in str(exc)


def test_parts_are_sent_with_content_length_not_chunked(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        eid = client.create_capture(
            NewCaptureInput(name="x", bytesize=10, input_data_format="video")
        ).eid
        url = client.create_upload_url(eid, 1, 10).upload_url
        # A generator body: httpx would use chunked encoding without the explicit length.
        etag = client.put_part(url, (b for b in [b"01234", b"56789"]), 10, doing="part 1")
    assert etag.strip('"') == hashlib.md5(b"0123456789").hexdigest()


# -- branch tests with MockTransport --------------------------------------------------------


def _mock_client(handler, clock: FakeClock, *, attempts: int = 4) -> TeleportClient:
    transport = httpx.MockTransport(handler)
    auth = ClientCredentialsAuth(
        token_url="https://auth.test/oauth2/token",
        client_id="id",
        client_secret="secret",
        clock=clock,
    )
    return TeleportClient(
        base_url="https://api.test",
        auth=auth,
        transport=transport,
        clock=clock,
        policy=RetryPolicy(max_attempts=attempts, base_delay=1, max_delay=8),
    )


def test_token_falls_back_to_form_encoding_on_415() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            seen.append(request.headers["content-type"])
            if "json" in request.headers["content-type"]:
                return httpx.Response(415)
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 60})
        assert request.headers["authorization"] == "Bearer tok-123456"
        return httpx.Response(200, json=[])

    with _mock_client(handler, FakeClock()) as client:
        assert client.list_captures() == []
    assert seen == ["application/json", "application/x-www-form-urlencoded"]


def test_connection_errors_retry_with_backoff_then_give_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        calls.append(request)
        raise httpx.ConnectError("connection refused")

    clock = FakeClock()
    with _mock_client(handler, clock, attempts=4) as client, pytest.raises(TransientError):
        client.list_captures()
    assert len(calls) == 4
    assert len(clock.sleeps) == 3
    # Full jitter: each delay within [0, base * 2**n].
    for n, delay in enumerate(clock.sleeps):
        assert 0 <= delay <= 2**n


def test_other_4xx_are_never_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        calls.append(request)
        return httpx.Response(403, json={"detail": "Your plan does not allow training_parameters"})

    clock = FakeClock()
    with _mock_client(handler, clock) as client, pytest.raises(RequestRejected) as info:
        client.list_captures()
    assert len(calls) == 1 and clock.sleeps == []
    assert "Your plan does not allow training_parameters" in str(info.value)


def test_unknown_fields_and_states_are_tolerated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        return httpx.Response(
            200,
            json=[
                {
                    "eid": "e1",
                    "name": "n",
                    "created": "2026-01-01T00:00:00Z",
                    "state": "QUANTUM_ENTANGLED",
                    "brand_new_field": {"x": 1},
                }
            ],
        )

    with _mock_client(handler, FakeClock()) as client:
        [capture] = client.list_captures()
    assert capture.state == "QUANTUM_ENTANGLED"
    assert capture.model_extra == {"brand_new_field": {"x": 1}}
