"""Notifications from an outbox in the journal: at least once, across crashes and restarts.

`Outbox.emit` journals one row per event and interested target in one transaction (the row is
the promise). `Deliverer` POSTs due rows, marks them delivered on a 2xx, else retries with the
project's backoff policy until `give_up_after` seconds from the event, then gives up with a log
line and a metric. A crash between the POST and the mark sends the event again: receivers
deduplicate by its id (`X-Teleport-Sync-Event-Id`, and `id` in the body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..config import NotifyTarget
from ..journal import Journal, OutboxRow, shown
from ..logging import REDACTOR, get_logger
from ..retry import RetryPolicy
from ..timestamps import seconds_since, utc_in, utc_now
from .formats import render
from .payloads import Event

log = get_logger("teleport_sync.notify")

SIGNATURE_HEADER = "X-Teleport-Sync-Signature"
EVENT_ID_HEADER = "X-Teleport-Sync-Event-Id"
EVENT_HEADER = "X-Teleport-Sync-Event"
DEFAULT_POLICY = RetryPolicy(max_attempts=1_000_000, base_delay=5.0, max_delay=900.0)
GIVE_UP_AFTER_SECONDS = 24 * 3600.0


def target_key(target: NotifyTarget) -> str:
    """How the journal names a target: a digest, because a URL (Slack's) can be a secret."""
    return hashlib.sha256(target.url.encode()).hexdigest()[:16]


def target_label(index: int, target: NotifyTarget) -> str:
    """How logs and messages name a target: its position and host, never its path or query."""
    return f"[[notify]] #{index + 1} ({urlsplit(target.url).hostname})"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.sent = Counter(
            "teleport_sync_notifications",
            "Notification deliveries by event kind and outcome (delivered, failed, given_up)",
            ["event", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "teleport_sync_notifications_pending",
            "Notifications queued and not yet delivered or given up",
            registry=registry,
        )


@dataclass(frozen=True)
class Sent:
    ok: bool
    detail: str  # "HTTP 204" or the error, without the URL


def post(http: httpx.Client, target: NotifyTarget, event: Event) -> Sent:
    """One attempt to deliver `event` to `target`."""
    body = render(event, target.format)
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.event_id,
        EVENT_HEADER: event.kind,
    }
    if target.secret is not None:
        headers[SIGNATURE_HEADER] = sign(target.secret.get_secret_value(), body)
    try:
        response = http.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # httpx's messages can quote the URL; the exception's type and errno say enough.
        return Sent(False, f"{type(exc).__name__}: {REDACTOR.redact(str(exc))[:200]}")
    return Sent(response.is_success, f"HTTP {response.status_code}")


def event_from_row(row: OutboxRow) -> Event:
    payload = json.loads(row.payload)
    event_id = payload.pop("id")
    kind = payload.pop("event")
    return Event(kind, event_id, payload)


class Outbox:
    """Where the daemon puts events; targets that asked for the kind each get a row."""

    def __init__(self, journal: Journal, targets: list[NotifyTarget]) -> None:
        self.journal = journal
        self.targets = targets
        self.wake = threading.Event()

    def emit(
        self,
        event: Event,
        *,
        file_id: int | None = None,
        mark: str = "notify",
        eid: str | None = None,
    ) -> int:
        """Queue `event` for every target that wants it; with `file_id`, mark the file
        notified (`mark`), only while it still has capture `eid` (`StaleCapture` otherwise)."""
        keys = [target_key(t) for t in self.targets if event.kind in t.events]
        # A file name that is not UTF-8 reaches the payload as text with surrogates: shown
        # with \x escapes, as `status` shows it, so the event is valid UTF-8 JSON.
        payload = json.dumps(_printable(event.payload()), ensure_ascii=False)
        added = self.journal.enqueue_notification(
            file_id, event.event_id, event.kind, payload, keys, mark=mark, eid=eid
        )
        if added:
            log.info("notification queued", notification=event.kind, id=event.event_id)
            self.wake.set()
        return added


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


class Deliverer:
    """The outbox's one sender thread; `now` and the HTTP transport are injectable."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        http: httpx.Client,
        metrics: NotifyMetrics,
        stop: threading.Event,
        policy: RetryPolicy = DEFAULT_POLICY,
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.journal = outbox.journal
        self.http = http
        self.metrics = metrics
        self.stop = stop
        self.policy = policy
        self.give_up_after = give_up_after
        self.now = now
        self.retarget(outbox.targets)

    def retarget(self, targets: list[NotifyTarget]) -> None:
        # One assignment: the sender thread sees the old mapping or the new one, never half.
        self.by_key = {target_key(t): (i, t) for i, t in enumerate(targets)}

    def run(self) -> None:
        while not self.stop.is_set():
            self.outbox.wake.clear()
            try:
                self.deliver_due()
                wait = self._seconds_to_next()
            except Exception:  # the sender must outlive a bad row or a journal hiccup
                log.exception("notification delivery failed unexpectedly; will retry")
                wait = 30.0
            self.outbox.wake.wait(wait)

    def _seconds_to_next(self) -> float:
        at = self.journal.next_notification_at()
        if at is None:
            return 3600.0
        return max(0.0, min(3600.0, -seconds_since(at, self.now())))

    def deliver_due(self) -> int:
        """Try every due row once; returns how many were delivered."""
        delivered = 0
        failing: set[str] = set()
        now = utc_now(self.now())
        for row in self.journal.due_notifications(now):
            if self.stop.is_set():
                break
            if row.target in failing:
                continue  # postponed with the failure: a dead target costs one timeout a pass
            if self.attempt(row):
                delivered += 1
            else:
                failing.add(row.target)
        self.metrics.pending.set(self.journal.pending_notifications())
        return delivered

    def attempt(self, row: OutboxRow) -> bool:
        found = self.by_key.get(row.target)
        if found is None:
            self.journal.notification_done(
                row.event_id, row.target, delivered=False, error="target no longer configured"
            )
            log.warning("notification dropped: its target is no longer configured", id=row.event_id)
            return False
        index, target = found
        sent = post(self.http, target, event_from_row(row))
        if sent.ok:
            self.journal.notification_done(row.event_id, row.target, delivered=True)
            self.metrics.sent.labels(row.kind, "delivered").inc()
            log.info(
                "notification delivered", notification=row.kind, target=target_label(index, target)
            )
            return True
        self.metrics.sent.labels(row.kind, "failed").inc()
        age = seconds_since(row.created_at, self.now())
        if age >= self.give_up_after:
            self.journal.notification_done(
                row.event_id, row.target, delivered=False, error=sent.detail
            )
            self.metrics.sent.labels(row.kind, "given_up").inc()
            log.error(
                "notification given up",
                notification=row.kind,
                id=row.event_id,
                target=target_label(index, target),
                attempts=row.attempts + 1,
                error=sent.detail,
            )
            return False
        delay = self.policy.backoff(row.attempts)
        at = utc_in(delay, self.now())
        self.journal.notification_retry(row.event_id, row.target, sent.detail, at)
        log.warning(
            "notification not delivered; will retry",
            notification=row.kind,
            target=target_label(index, target),
            error=sent.detail,
            retry_in=round(delay, 1),
        )
        return False
