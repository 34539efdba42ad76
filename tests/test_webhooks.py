"""Teleport's webhooks: signature checks, the receiver over loopback, and the daemon brought
READY by the emulator's signed webhook while its poller sleeps for ten minutes."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.events.webhooks import (
    MAX_BODY_BYTES,
    BadDelivery,
    WebhookReceiver,
    apply_delivery,
    parse_delivery,
    verify_signature,
)
from teleport_sync.journal import FileRecord, Journal
from teleport_sync.models import CaptureOutput, FileIdentity

from .conftest import write_config
from .helpers import MIB, make_zip, set_knobs, wait_for
from .sink import Sink, captured_log, free_port
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for

SECRET = "whsec-test-0123456789"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Teleport-Signature": digest, "Content-Type": "application/json"}


# -- signatures and bodies ---------------------------------------------------------------------


def test_signature_forms_accepted_and_forgeries_refused() -> None:
    body = b'{"eid": "e1", "state": "READY"}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    key = SECRET.encode()
    assert verify_signature(key, body, digest)
    assert verify_signature(key, body, f"sha256={digest}")
    assert verify_signature(key, body, f" SHA256={digest.upper()} ")
    assert not verify_signature(key, body, None)
    assert not verify_signature(key, body, "")
    assert not verify_signature(key, body + b" ", digest)  # the raw bytes are what is signed
    assert not verify_signature(b"other-secret", body, digest)
    assert not verify_signature(key, body, digest[:-1] + "é")
    assert not verify_signature(key, body, "sha1=" + digest)


def test_bodies_that_are_not_webhooks_are_refused() -> None:
    for body in (
        b"not json",
        b"[1, 2]",
        b'{"eid": "e1"}',
        b'{"eid": 5, "state": "READY"}',
        b"\xff",
    ):
        with pytest.raises(BadDelivery):
            parse_delivery(body)
    delivery = parse_delivery(b'{"eid": "e1", "sid": "s1", "state": "ERROR", "error_reason": "X"}')
    assert (delivery.eid, delivery.sid, delivery.state, delivery.error_reason) == (
        "e1",
        "s1",
        "ERROR",
        "X",
    )


# -- the receiver over loopback, against a real journal -----------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        yield journal


def uploaded_capture(journal: Journal, eid: str, name: str = "a.zip") -> FileRecord:
    record = journal.register(f"/inbox/{name}", FileIdentity(1, 2, 3, 4, "f"), "bulk-images", name)
    journal.record_created(record.id, eid, 5 * MIB, 1)
    journal.mark_uploaded(record.id)
    journal.record_state(record.id, "PROCESSING", "sid-1", source="poll")
    return journal.get(record.id)


class TheApi:
    """What the API's listing says of each capture (the receiver checks deliveries with it)."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str | None]] = {}

    def find_capture(self, eid: str) -> CaptureOutput | None:
        if eid not in self.states:
            return None
        state, sid = self.states[eid]
        return CaptureOutput(eid=eid, name=eid, state=state, created=NOW, sid=sid)


@pytest.fixture
def api() -> TheApi:
    return TheApi()


@pytest.fixture
def receiver(journal: Journal, api: TheApi) -> Iterator[tuple[str, list[FileRecord]]]:
    ended: list[FileRecord] = []
    server = WebhookReceiver(
        "127.0.0.1:0",
        "/teleport/webhook",
        SECRET,
        lambda delivery: apply_delivery(journal, delivery, api.find_capture, ended.append),
    )
    server.start()
    host, port = server.address
    yield f"http://{host}:{port}/teleport/webhook", ended
    server.close()


def test_receiver_answers_each_kind_of_request(
    journal: Journal, receiver: tuple[str, list[FileRecord]], api: TheApi
) -> None:
    url, ended = receiver
    record = uploaded_capture(journal, "e-known")
    api.states["e-known"] = ("READY", "sid-9")
    before = journal.state_history(record.id)

    got = httpx.get(url)
    assert (got.status_code, got.headers["allow"]) == (405, "POST")
    assert httpx.post(url.replace("/teleport/webhook", "/other"), content=b"{}").status_code == 404

    ready = json.dumps({"eid": "e-known", "sid": "sid-9", "state": "READY"}).encode()
    assert httpx.post(url, content=ready).status_code == 401  # no signature
    forged = signed(ready, "not-the-secret")
    assert httpx.post(url, content=ready, headers=forged).status_code == 401
    tampered = ready.replace(b"READY", b"ERROR")
    assert httpx.post(url, content=tampered, headers=signed(ready)).status_code == 401
    # Nothing a refused request said reached the journal.
    assert journal.state_history(record.id) == before
    assert journal.get(record.id).capture_state == "PROCESSING" and not ended

    big = b"x" * (MAX_BODY_BYTES + 1)
    assert httpx.post(url, content=big, headers=signed(big)).status_code == 413
    assert httpx.post(url, content=b"{oops", headers=signed(b"{oops")).status_code == 400

    other = json.dumps({"eid": "someone-elses", "state": "READY"}).encode()
    answer = httpx.post(url, content=other, headers=signed(other))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")

    answer = httpx.post(url, content=ready, headers=signed(ready))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "applied")
    after = journal.get(record.id)
    assert (after.capture_state, after.sid) == ("READY", "sid-9")
    assert journal.state_history(record.id)[-1]["source"] == "webhook"
    assert [r.eid for r in ended] == ["e-known"]

    # Idempotent: a repeated delivery changes nothing and starts nothing.
    answer = httpx.post(url, content=ready, headers=signed(ready))
    assert answer.json()["outcome"] == "duplicate"
    assert len(journal.state_history(record.id)) == len(before) + 1
    assert len(ended) == 1


def test_error_after_a_polled_failure_is_the_same_outcome(
    journal: Journal, receiver: tuple[str, list[FileRecord]], api: TheApi
) -> None:
    url, ended = receiver
    record = uploaded_capture(journal, "e-bad")
    journal.record_state(record.id, "FAILED", source="poll")
    body = json.dumps({"eid": "e-bad", "state": "ERROR", "error_reason": "NOT_ENOUGH_FRAMES"})
    answer = httpx.post(url, content=body.encode(), headers=signed(body.encode()))
    assert answer.json()["outcome"] == "duplicate"
    assert [h["state"] for h in journal.state_history(record.id)] == ["PROCESSING", "FAILED"]
    assert not ended


# -- the daemon, woken by the emulator's webhook ------------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=5, chunk_size=5 * MIB, processing_delay_seconds=1.5, webhook_secret=SECRET
    )


def test_webhook_brings_ready_and_the_model_while_polling_sleeps(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    set_knobs(emulator, webhook_url=f"http://127.0.0.1:{port}/teleport/webhook")
    settings = settings_for(
        emulator,
        tmp_path,
        poll={"interval_seconds": 600},
        webhooks={"listen": f"127.0.0.1:{port}", "secret": SECRET},
    )
    inbox = settings.watch.paths[0]
    # The poller's first look at each capture waits its whole interval: the webhooks do it all.
    with captured_log() as log, Running(settings, first_poll_seconds=600) as running:
        make_zip(inbox / "scan.zip", images=4)
        wait_for(
            lambda: (
                "scan.zip" in rows(settings) and bool(rows(settings)["scan.zip"]["result_paths"])
            ),
            30,
            "READY and the model, by webhook",
        )
        set_knobs(emulator, fail_processing_with="NOT_ENOUGH_FRAMES")
        make_zip(inbox / "few.zip", images=2)
        wait_for(
            lambda: (
                "few.zip" in rows(settings)
                and rows(settings)["few.zip"]["capture_state"] == "FAILED"
            ),
            30,
            "the failure, by webhook (the API's name for it: FAILED)",
        )
        failed = rows(settings)["few.zip"]["state_history"][-1]  # type: ignore[index]
        assert failed["source"] == "webhook"
        row = rows(settings)["scan.zip"]
        assert row["state_history"][-1] == {  # type: ignore[index]
            "state": "READY",
            "observed_at": row["state_history"][-1]["observed_at"],  # type: ignore[index]
            "source": "webhook",
            "applied": True,
            "note": None,
        }
        model = Path(row["result_paths"][0])  # type: ignore[index]
        assert model.read_bytes().startswith(b"ply\n")
        assert {(s.state, s.status) for s in emulator.webhooks.sent} == {
            ("READY", 200),
            ("ERROR", 200),
        }
        # The poller slept: the webhooks did it all, each checked with one listing of its own.
        assert emulator.stats.count("api", "GET", "/api/v1/captures") <= 2

        # A forged delivery is refused and changes nothing.
        eid = str(row["eid"])
        forged = json.dumps({"eid": eid, "state": "ERROR", "error_reason": "X"}).encode()
        url = f"http://127.0.0.1:{port}/teleport/webhook"
        answer = httpx.post(url, content=forged, headers=signed(forged, "guessed"))
        assert answer.status_code == 401
        assert rows(settings)["scan.zip"] == row
        registry = running.daemon.metrics.registry
        counted = {
            outcome: registry.get_sample_value("teleport_sync_webhooks_total", {"outcome": outcome})
            for outcome in ("applied", "bad_signature")
        }
        assert counted == {"applied": 2, "bad_signature": 1}
    # The signing secret is in no log line and nowhere in the journal's files.
    assert "webhook refused: bad or missing signature" in log.getvalue()
    assert SECRET not in log.getvalue()
    for journal_file in tmp_path.glob("journal.sqlite3*"):
        assert SECRET.encode() not in journal_file.read_bytes()


def test_emulator_retries_a_webhook_that_is_not_taken(emulator: EmulatorServer) -> None:
    emulator.webhooks.retry_pause_seconds = 0.01
    with Sink(status=503) as sink:
        set_knobs(emulator, webhook_url=sink.url)
        sent = emulator.webhooks.send({"eid": "e1", "sid": "s1", "state": "READY"})
        assert (sent.status, sent.attempts) == (503, 3)
        assert len(sink.received) == 3
        body = sink.received[0].body
        assert verify_signature(
            SECRET.encode(), body, sink.received[0].headers["X-Teleport-Signature"]
        )
        sink.status = 200
        assert emulator.webhooks.send({"eid": "e1", "state": "READY"}).attempts == 1
    set_knobs(emulator, webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    sent = emulator.webhooks.send({"eid": "e1", "state": "READY"})
    assert (sent.status, sent.attempts) == (None, 3)


def test_a_taken_port_is_a_configuration_error(emulator: EmulatorServer, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "config.toml",
            emulator,
            extra=f'[watch]\npaths = ["{inbox}"]\n[webhooks]\nlisten = "127.0.0.1:{port}"\n',
        )
        result = run_cli(
            "--config", str(config), "run", env={"TELEPORT_SYNC_WEBHOOKS__SECRET": SECRET}
        )
    assert result.returncode == 2
    assert f"[webhooks] listen = '127.0.0.1:{port}': cannot listen there" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_a_webhook_without_a_share_id_still_brings_the_model(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        poll={"interval_seconds": 600},
        webhooks={"listen": f"127.0.0.1:{port}", "secret": SECRET},
    )
    # UPLOADED (no share id yet) for the first 1.8 s: the completion's answer says so, and the
    # poller is told to wait a long while before its first look.
    set_knobs(emulator, processing_delay_seconds=6.0)
    with Running(settings, first_poll_seconds=600):
        make_zip(settings.watch.paths[0] / "scan.zip", images=3)
        wait_for(lambda: len(emulator.backend.captures) == 1, 30, "the capture")
        (capture,) = emulator.backend.captures.values()
        wait_for(lambda: emulator.backend.state_of(capture) == "READY", 30, "processing")
        assert rows(settings)["scan.zip"]["sid"] is None  # polled once, while UPLOADED
        body = json.dumps({"eid": capture.eid, "state": "READY"}).encode()
        url = f"http://127.0.0.1:{port}/teleport/webhook"
        assert httpx.post(url, content=body, headers=signed(body)).json()["outcome"] == "applied"
        wait_for(lambda: bool(rows(settings)["scan.zip"]["result_paths"]), 30, "the model")
    assert rows(settings)["scan.zip"]["sid"] == capture.sid
