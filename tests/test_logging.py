"""No client secret, bearer token or presigned-URL signature reaches a log line."""

from __future__ import annotations

import io
import json

import structlog

from teleport_sync.api import build_client
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.logging import REDACTOR, Redactor, configure_logging, get_logger
from teleport_sync.models import NewCaptureInput

SIGNED_URL = (
    "http://127.0.0.1:9/b/k?uploadId=u&partNumber=1&X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIDEXAMPLE%2F20261127%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20261127T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
    "&X-Amz-Security-Token=FQoGZXIvYXdzEJr&X-Amz-Signature=deadbeefcafef00d1234"
)


def test_patterns_mask_every_credential_form() -> None:
    redactor = Redactor(["super-secret-value"])
    text = redactor.redact(
        f"PUT {SIGNED_URL} Authorization: Bearer abc.def.ghi "
        '{"client_secret": "super-secret-value", "access_token": "tok123456"} '
        "https://cdn.test/m.ply?Signature=zzz&Expires=1"
    )
    for leaked in (
        "deadbeefcafef00d1234",
        "AKIDEXAMPLE",
        "FQoGZXIvYXdzEJr",
        "abc.def.ghi",
        "super-secret-value",
        "tok123456",
        "zzz",
    ):
        assert leaked not in text, leaked
    assert "X-Amz-Expires=900" in text  # harmless parts stay readable


def test_a_short_configured_secret_is_masked_too() -> None:
    redactor = Redactor()
    redactor.add_secret("wrong")  # too short to register as a token
    assert redactor.redact("server said: bad secret wrong") == "server said: bad secret wrong"
    redactor.add_secret("wrong", min_length=4)  # as the configured client secret is
    assert "wrong" not in redactor.redact("server said: bad secret wrong")


def test_debug_logging_of_a_real_session_leaks_nothing(emulator: EmulatorServer) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    log = get_logger("test")
    secret = emulator.config.client_secret
    REDACTOR.add_secret(secret)
    client = build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=secret,
        on_token=REDACTOR.add_secret,
    )
    with client:
        eid = client.create_capture(
            NewCaptureInput(name="x", bytesize=10, input_data_format="video")
        ).eid
        url = client.create_upload_url(eid, 1, 10).upload_url
        token = client.access_token()
        # The kinds of things careless code logs:
        log.debug("got url", url=url, headers={"Authorization": f"Bearer {token}"})
        log.info(f"token is {token} and secret {secret}")
        try:
            raise RuntimeError(f"PUT {url} failed with Authorization: Bearer {token}")
        except RuntimeError:
            log.exception("part failed")
    output = stream.getvalue()
    structlog.reset_defaults()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 3 and lines[2]["exception"]
    signatures = [*emulator.stats.tokens_issued, secret, url.split("X-Amz-Signature=")[1]]
    for value in signatures:
        assert value not in output
