"""Outgoing notifications: payloads, the Slack format, the journal outbox and its delivery
(backoff, giving up, across a SIGKILL), `notify test`, and the daemon's events end to end."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from teleport_sync.config import NotifyTarget, Settings
from teleport_sync.daemon.finishing import Finishing
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.events import payloads
from teleport_sync.events.emitter import EventHub
from teleport_sync.events.formats import to_slack
from teleport_sync.events.outbox import Deliverer, NotifyMetrics, Outbox
from teleport_sync.journal import Journal
from teleport_sync.models import FileIdentity
from teleport_sync.retry import RetryPolicy
from teleport_sync.status.phases import LOST_JOURNAL_HOLD

from .conftest import write_config
from .helpers import MIB, make_zip, wait_for
from .sink import Sink, captured_log, free_port
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for

NOTIFY_SECRET = "notify-hmac-secret-42"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=9, chunk_size=5 * MIB, processing_delay_seconds=1.0)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        yield journal


def ended_capture(journal: Journal, name: str, state: str, eid: str = "e-1") -> Any:
    record = journal.register(f"/inbox/{name}", FileIdentity(1, 2, 3, 4, "f"), "bulk-images", name)
    journal.record_created(record.id, eid, 5 * MIB, 1)
    journal.mark_uploaded(record.id)
    journal.record_state(record.id, "PROCESSING", "sid-1", source="poll")
    journal.record_state(record.id, state, source="webhook")
    return journal.get(record.id)


# -- the Slack format, against the fields Slack's incoming webhooks accept ----------------------

TEXT_KEYS = {"type", "text", "emoji", "verbatim"}
SECTION_KEYS = {"type", "text", "fields", "block_id", "accessory"}
CONTEXT_KEYS = {"type", "elements", "block_id"}
MESSAGE_KEYS = {"text", "blocks", "attachments", "thread_ts", "mrkdwn"}


def check_text_object(obj: dict[str, Any], limit: int) -> None:
    assert set(obj) <= TEXT_KEYS and obj["type"] in ("mrkdwn", "plain_text")
    assert isinstance(obj["text"], str) and 0 < len(obj["text"]) <= limit


def check_slack_message(message: dict[str, Any]) -> None:
    """Slack Block Kit's rules for what we send: section and context blocks, within limits."""
    assert set(message) <= MESSAGE_KEYS
    assert isinstance(message["text"], str) and message["text"]  # the notification fallback
    blocks = message["blocks"]
    assert 0 < len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section":
            assert set(block) <= SECTION_KEYS and ("text" in block or "fields" in block)
            if "text" in block:
                check_text_object(block["text"], 3000)
            for item in block.get("fields", []):
                check_text_object(item, 2000)
            assert len(block.get("fields", [])) <= 10
        else:
            assert block["type"] == "context" and set(block) <= CONTEXT_KEYS
            assert 0 < len(block["elements"]) <= 10
            for element in block["elements"]:
                check_text_object(element, 2000)
    # Slack's control characters are escaped outside link syntax (<url|label>).
    for block in blocks:
        texts = [block.get("text", {}).get("text", "")] + [
            f["text"] for f in block.get("fields", [])
        ]
        for text in texts:
            stripped = text.replace("<https://", "").replace("|Open in the viewer>", "")
            assert "<" not in stripped and ">" not in stripped


def test_slack_messages_are_valid_block_kit(journal: Journal) -> None:
    record = ended_capture(journal, "<b>&scan.zip", "READY")
    journal.mark_action(record.id, "download", ["/srv/splats/a.ply", "/srv/splats/b.ply"])
    record = journal.get(record.id)
    history = journal.state_history(record.id)
    ready = payloads.capture_ended(
        record, history, reason=None, viewer_url="https://v.example/share/s1?sig=abc"
    )
    failed = payloads.capture_ended(record, history, reason="x" * 5000, viewer_url=None)
    events = [
        ready,
        failed,
        payloads.rejected(record),
        payloads.auth(True, "401 from the token endpoint", "2026-01-01T00:00:00+00:00"),
        payloads.stuck(record, "2026-01-01T00:00:00+00:00", 7200),
        payloads.trial(),
    ]
    for event in events:
        check_slack_message(to_slack(event))
    message = to_slack(ready)
    assert "&lt;b&gt;&amp;scan.zip" in message["blocks"][0]["text"]["text"]
    # The viewer link keeps no query string: that is where a signature would be.
    assert "<https://v.example/share/s1|Open in the viewer>" in message["blocks"][0]["text"]["text"]
    assert "sig=abc" not in json.dumps(message)


# -- the outbox and its deliverer ---------------------------------------------------------------


class Now:
    """The deliverer's clock: the real time (the journal stamps rows with it) plus `ahead`."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def deliverer_for(journal: Journal, targets: list[NotifyTarget], now: Now) -> Deliverer:
    outbox = Outbox(journal, targets)
    return Deliverer(
        outbox,
        http=httpx.Client(timeout=5),
        metrics=NotifyMetrics(CollectorRegistry()),
        stop=threading.Event(),
        give_up_after=3600,
        now=now,
        # Seeded: the first backoff is 4.8 s (full jitter of 5 s), so "not due yet" is certain.
        policy=RetryPolicy(
            max_attempts=1000, base_delay=5.0, max_delay=900.0, rng=random.Random(2)
        ),
    )


def metric(deliverer: Deliverer, kind: str, outcome: str) -> float:
    return deliverer.metrics.sent.labels(kind, outcome)._value.get()


def test_outbox_retries_with_backoff_then_gives_up(journal: Journal, sink: Sink) -> None:
    now = Now()
    target = NotifyTarget(url=sink.url, events=["failed"])
    deliverer = deliverer_for(journal, [target], now)
    record = ended_capture(journal, "a.zip", "ERROR")
    event = payloads.capture_ended(
        record, journal.state_history(record.id), reason="CONVERSION_FAILED", viewer_url=None
    )
    assert deliverer.outbox.emit(event, file_id=record.id) == 1
    assert deliverer.outbox.emit(event, file_id=record.id) == 0  # one event id, one row
    assert "notify" in journal.get(record.id).actions_done

    sink.status = 503
    assert deliverer.deliver_due() == 0
    (row,) = journal.outbox()
    assert row.attempts == 1 and row.last_error == "HTTP 503" and row.delivered_at is None
    assert datetime.fromisoformat(row.next_attempt_at) >= datetime.fromisoformat(row.created_at)
    assert metric(deliverer, "failed", "failed") == 1
    assert deliverer.metrics.pending._value.get() == 1

    now.ahead += timedelta(seconds=1000)  # past any backoff, short of giving up
    deliverer.deliver_due()
    assert journal.outbox()[0].attempts == 2 and journal.outbox()[0].given_up_at is None
    now.ahead += timedelta(seconds=3600)
    with captured_log() as log:
        deliverer.deliver_due()
    (row,) = journal.outbox()
    assert row.given_up_at is not None and row.delivered_at is None
    assert metric(deliverer, "failed", "given_up") == 1
    assert deliverer.metrics.pending._value.get() == 0
    assert "notification given up" in log.getvalue()
    assert sink.url not in log.getvalue()  # targets are named by host, never by URL
    assert len(sink.received) == 3
    assert {r.headers["X-Teleport-Sync-Event-Id"] for r in sink.received} == {event.event_id}
    now.ahead += timedelta(days=2)
    assert deliverer.deliver_due() == 0 and len(sink.received) == 3  # given up means given up


def test_a_failing_target_costs_one_attempt_per_pass(journal: Journal, sink: Sink) -> None:
    now = Now()
    dead = NotifyTarget(url=f"http://127.0.0.1:{free_port()}/nobody")
    deliverer = deliverer_for(journal, [dead, NotifyTarget(url=sink.url)], now)
    for eid in ("e-1", "e-2", "e-3"):
        record = ended_capture(journal, f"{eid}.zip", "READY", eid=eid)
        history = journal.state_history(record.id)
        deliverer.outbox.emit(payloads.capture_ended(record, history, reason=None, viewer_url=None))
    assert deliverer.deliver_due() == 3  # the live target got all three
    rows_for_dead = [r for r in journal.outbox() if r.delivered_at is None]
    assert sorted(r.attempts for r in rows_for_dead) == [0, 0, 1]
    assert len({r.next_attempt_at for r in rows_for_dead}) == 1  # all wait together
    assert deliverer.deliver_due() == 0  # nothing due until then: no busy loop
    assert deliverer._seconds_to_next() > 0


def test_outbox_delivers_once_and_only_kinds_asked_for(journal: Journal, sink: Sink) -> None:
    now = Now()
    everything = NotifyTarget(url=sink.url, secret=NOTIFY_SECRET)
    only_ready = NotifyTarget(url=sink.url + "/ready-only", events=["ready"])
    deliverer = deliverer_for(journal, [everything, only_ready], now)
    record = ended_capture(journal, "a.zip", "READY")
    event = payloads.capture_ended(
        record, journal.state_history(record.id), reason=None, viewer_url=None
    )
    assert deliverer.outbox.emit(event) == 2
    rejected = payloads.rejected(record)
    assert deliverer.outbox.emit(rejected) == 1
    assert deliverer.deliver_due() == 3
    assert deliverer.deliver_due() == 0
    assert sorted((r.path, r.json()["event"]) for r in sink.received) == [
        ("/hook", "ready"),
        ("/hook", "rejected"),
        ("/hook/ready-only", "ready"),
    ]
    signed = [r for r in sink.received if r.path == "/hook"]
    for received in signed:
        expected = hmac.new(NOTIFY_SECRET.encode(), received.body, hashlib.sha256).hexdigest()
        assert received.headers["X-Teleport-Sync-Signature"] == f"sha256={expected}"
    assert metric(deliverer, "ready", "delivered") == 2


def test_stuck_and_auth_events_are_queued_once(journal: Journal, sink: Sink) -> None:
    settings = Settings(
        notify=[{"url": sink.url}],  # type: ignore[list-item]
        poll={"stuck_after_seconds": 4},  # type: ignore[arg-type]
        journal={"path": journal.path},  # type: ignore[arg-type]
    )
    later = Now()
    later.ahead = timedelta(seconds=5)
    hub = EventHub(
        settings, journal, stop=threading.Event(), registry=CollectorRegistry(), now=later
    )
    try:
        record = journal.register("/inbox/slow.zip", FileIdentity(1, 2, 3, 4, "f"), "video", "s")
        journal.record_created(record.id, "e-slow", 5 * MIB, 1)
        journal.mark_uploaded(record.id)
        journal.record_state(record.id, "PROCESSING", "sid-1", source="poll")
        assert hub.check_stuck(force=True) == 1
        assert hub.check_stuck(force=True) == 0

        hub.auth_result("authentication failed at http://x/oauth2/token: HTTP 401")
        hub.auth_result("authentication failed again")
        hub.auth_result(None)
        hub.auth_result(None)
        assert hub.deliverer.deliver_due() == 3
    finally:
        hub.close()
    bodies = [r.json() for r in sink.received]
    assert [(b["event"], b["state"]) for b in bodies] == [
        ("stuck", "PROCESSING"),
        ("auth", "failing"),
        ("auth", "recovered"),
    ]
    assert bodies[0]["eid"] == "e-slow" and "PROCESSING for" in bodies[0]["reason"]


# -- the daemon end to end ---------------------------------------------------------------------


def test_ready_and_rejected_reach_a_json_sink_without_secrets(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    settings = settings_for(
        emulator,
        tmp_path,
        notify=[{"url": sink.url, "events": ["ready", "rejected"], "secret": NOTIFY_SECRET}],
        webhooks={"listen": f"127.0.0.1:{free_port()}", "secret": "whsec-never-sent-1"},
    )
    inbox = settings.watch.paths[0]
    with Running(settings) as running:
        make_zip(inbox / "scan.zip", images=3)
        make_zip(inbox / "no-images.zip", images=0, pad=100)
        wait_for(lambda: len(sink.received) >= 2, 30, "two notifications")
        registry = running.daemon.metrics.registry

        def delivered() -> float | None:
            labels = {"event": "ready", "outcome": "delivered"}
            return registry.get_sample_value("teleport_sync_notifications_total", labels)

        # The sink has the request before the sender has its answer: wait for the count.
        wait_for(lambda: delivered() == 1, 10, "the delivery counted")
    by_kind = {r.json()["event"]: r for r in sink.received}
    assert set(by_kind) == {"ready", "rejected"} and len(sink.received) == 2
    ready = by_kind["ready"].json()
    row = rows(settings)["scan.zip"]
    assert ready["eid"] == row["eid"] and ready["sid"] == row["sid"]
    assert ready["state"] == "READY" and ready["file"] == row["path"]
    assert ready["capture_name"] == "scan.zip" and ready["result_paths"] == row["result_paths"]
    assert f"/share/{row['sid']}" in ready["viewer_url"] and "?" not in ready["viewer_url"]
    assert ready["timings"]["noticed_at"] and ready["timings"]["ended_at"]
    assert by_kind["rejected"].json()["reason"].endswith("no images (.jpg, .png, .tif, ...)")
    everything_sent = b"".join(r.body + json.dumps(r.headers).encode() for r in sink.received)
    secrets = [
        emulator.config.client_secret,
        NOTIFY_SECRET,
        "whsec-never-sent-1",
        *emulator.stats.tokens_issued,
        *emulator.stats.signatures_issued,
    ]
    for secret in secrets:
        assert secret.encode() not in everything_sent
    assert b"X-Amz-" not in everything_sent and b"Signature=" not in everything_sent


def _run_daemon(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    return subprocess.Popen(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_event_pending_at_sigkill_is_delivered_after_restart(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()  # nothing listens there yet: deliveries fail and stay queued
    config = write_config(
        tmp_path / "config.toml",
        emulator,
        extra=(
            f'[watch]\npaths = ["{inbox}"]\nsettle_seconds = 0.3\n'
            f'[poll]\ninterval_seconds = 0.3\n[results]\ndir = "{tmp_path / "results"}"\n'
            f'[[notify]]\nurl = "http://127.0.0.1:{port}/hook"\nevents = ["ready"]\n'
        ),
    )
    journal_path = tmp_path / "journal.sqlite3"

    def queued() -> list[Any]:
        if not journal_path.exists():
            return []
        with Journal(journal_path, check_integrity=False) as journal:
            return journal.outbox()

    process = _run_daemon(config)
    try:
        make_zip(inbox / "scan.zip", images=3)
        wait_for(lambda: any(r.attempts >= 1 for r in queued()), 40, "a failed delivery")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    (pending,) = queued()
    assert pending.delivered_at is None and pending.kind == "ready"

    with Sink(port=port) as sink:
        process = _run_daemon(config)
        try:
            wait_for(lambda: len(sink.received) >= 1, 40, "delivery after the restart")
            wait_for(lambda: queued()[0].delivered_at is not None, 10, "the delivery journaled")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert len(sink.received) == 1
    body = sink.received[0].json()
    assert body["id"] == pending.event_id and body["event"] == "ready"
    assert body["eid"] == next(iter(emulator.backend.captures))


def test_notify_test_sends_to_every_target_and_names_the_failing_one(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    dead = free_port()
    config = write_config(
        tmp_path / "config.toml",
        emulator,
        extra=(
            f'[[notify]]\nurl = "{sink.url}"\nformat = "slack"\n'
            f'[[notify]]\nurl = "http://127.0.0.1:{dead}/nobody"\n'
        ),
    )
    result = run_cli("--config", str(config), "notify", "test")
    assert result.returncode == 1
    assert "#2 (127.0.0.1)" in result.stderr and "#1" not in result.stderr
    assert len(sink.received) == 1
    check_slack_message(sink.received[0].json())

    good = write_config(tmp_path / "good.toml", emulator, extra=f'[[notify]]\nurl = "{sink.url}"\n')
    result = run_cli("--config", str(good), "notify", "test")
    assert result.returncode == 0, result.stderr
    assert sink.received[-1].json()["event"] == "test"

    bare = write_config(tmp_path / "bare.toml", emulator)
    assert run_cli("--config", str(bare), "notify", "test").returncode == 2


def test_authentication_failing_is_notified_by_the_daemon(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    settings = settings_for(emulator, tmp_path, notify=[{"url": sink.url, "events": ["auth"]}])
    settings.api.client_secret = SecretStr("not-the-secret")
    with Running(settings):
        make_zip(settings.watch.paths[0] / "scan.zip", images=3)
        wait_for(lambda: len(sink.received) >= 1, 30, "an auth notification")
    (received,) = sink.received
    body = received.json()
    assert (body["event"], body["state"]) == ("auth", "failing")
    assert "authentication failed" in body["reason"]
    assert b"not-the-secret" not in received.body


class AllActionsDone:
    """Stands in for the folder actions: every ended capture's actions are done."""

    def run_for(self, record: Any) -> bool:
        return True


def test_sweep_queues_what_a_crash_left_out_once(journal: Journal, sink: Sink) -> None:
    settings = Settings(
        notify=[{"url": sink.url}],  # type: ignore[list-item]
        journal={"path": journal.path},  # type: ignore[arg-type]
    )
    hub = EventHub(settings, journal, stop=threading.Event(), registry=CollectorRegistry())
    try:
        # READY journaled, then a crash before its notification was queued.
        ready = ended_capture(journal, "a.zip", "READY", eid="e-a")
        bad = journal.reject(
            "/inbox/b.zip", FileIdentity(1, 5, 3, 4, "g"), "bulk-images", "b", "no"
        )
        # Held by the lost-journal rule: waiting for `approve`, not rejected, so not notified.
        held = journal.reject(
            "/inbox/c.zip", FileIdentity(1, 6, 3, 4, "h"), "bulk-images", "c", LOST_JOURNAL_HOLD
        )
        hub.file_rejected("/inbox/c.zip")
        hub.sweep()
        hub.sweep()
        # An ended capture waits for its actions: the finishing pass queues it, once.
        assert {row.kind for row in journal.outbox()} == {"rejected"}
        finishing = Finishing(
            None,  # type: ignore[arg-type]  (no renames in this test)
            journal,
            None,  # type: ignore[arg-type]
            AllActionsDone(),  # type: ignore[arg-type]
            hub,
            report_status=lambda: None,
        )
        finishing.retry_pending_actions()
        finishing.retry_pending_actions()
        assert {row.kind for row in journal.outbox()} == {"ready", "rejected"}
        assert len(journal.outbox()) == 2
        assert "notify" not in journal.get(held.id).actions_done
        assert "notify" in journal.get(ready.id).actions_done
        assert "notify" in journal.get(bad.id).actions_done
    finally:
        hub.close()


def test_migration_marks_old_endings_as_already_notified(tmp_path: Path) -> None:
    """Upgrading must not flood targets with every capture that ended before notifications."""
    import sqlite3

    import sqlite_utils

    from teleport_sync import journal as journal_module

    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    db = sqlite_utils.Database(conn)
    index = journal_module.MIGRATIONS.index(journal_module._migrate_v5_events)
    for migrate in journal_module.MIGRATIONS[:index]:
        migrate(db)
    now = "2026-01-01T00:00:00+00:00"
    for path, upload_state, capture_state in (
        ("/in/ready.zip", "uploaded", "READY"),
        ("/in/failed.zip", "uploaded", "FAILED"),
        ("/in/bad.zip", "rejected", None),
        ("/in/busy.zip", "uploaded", "PROCESSING"),
    ):
        conn.execute(
            "INSERT INTO files (path, size, upload_state, capture_state, created_at, updated_at) "
            "VALUES (?, 1, ?, ?, ?, ?)",
            (path, upload_state, capture_state, now, now),
        )
    journal_module._migrate_v5_events(db)
    marked = {
        path: json.loads(done)
        for path, done in conn.execute("SELECT path, actions_done FROM files").fetchall()
    }
    conn.close()
    assert marked == {
        "/in/ready.zip": ["notify"],
        "/in/failed.zip": ["notify"],
        "/in/bad.zip": ["notify"],
        "/in/busy.zip": [],
    }


def test_sighup_reload_brings_new_targets_and_keeps_the_receiver(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    port = free_port()
    hooks = {"listen": f"127.0.0.1:{port}", "secret": "whsec-first-123"}
    settings = settings_for(emulator, tmp_path, webhooks=hooks)
    changed = settings_for(
        emulator,
        tmp_path,
        notify=[{"url": sink.url, "events": ["ready"]}],
        webhooks={"listen": f"127.0.0.1:{free_port()}", "secret": "whsec-second-456"},
    )
    with Running(settings, reload=lambda: changed) as running:
        running.daemon.request_reload()
        wait_for(lambda: running.daemon.settings is changed, 15, "the reload")
        # [webhooks] waits for a restart: the running receiver and its secret stay.
        assert running.daemon.settings.webhooks.listen == hooks["listen"]
        assert running.daemon.events.receiver is not None
        assert running.daemon.events.receiver.address[1] == port
        make_zip(settings.watch.paths[0] / "scan.zip", images=3)
        wait_for(lambda: len(sink.received) >= 1, 30, "a ready notification to the new target")
    assert sink.received[0].json()["event"] == "ready"
