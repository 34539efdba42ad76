"""What the daemon tells the event side: a capture ended, a file was rejected, authentication
failed or recovered, time passed (stuck captures); and the webhook receiver it runs.

Each notification is queued once per file version: the journal marks the file `notify` in the
same transaction that queues the event, and a sweep at start-up queues what a crash left out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter

from ..config import ConfigError, Settings
from ..journal import FileRecord, Journal, PreflightRow, UploadState, action_key
from ..journal.states import is_lost_journal_hold
from ..logging import REDACTOR, get_logger
from ..models import CaptureOutput
from ..timestamps import seconds_since, utc_seconds
from . import payloads
from .outbox import Deliverer, NotifyMetrics, Outbox
from .webhooks import WebhookReceiver, apply_delivery

log = get_logger("teleport_sync.notify")

AUTH_FACT = "notify.auth_failing_since"
STUCK_CHECK_SECONDS = 60.0


class EventHub:
    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        *,
        stop: threading.Event,
        registry: CollectorRegistry | None = None,
        viewer_url: Callable[[FileRecord], str | None] | None = None,
        http: httpx.Client | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.stop = stop
        self.viewer_url = viewer_url
        self.now = now
        self.outbox = Outbox(journal, settings.notify)
        self._http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self.deliverer = Deliverer(
            self.outbox, http=self._http, metrics=NotifyMetrics(registry), stop=stop
        )
        self.webhook_outcomes = Counter(
            "teleport_sync_webhooks",
            "Webhook deliveries received, by outcome (applied, ignored, bad_signature, ...)",
            ["outcome"],
            registry=registry,
        )
        self.receiver: WebhookReceiver | None = None
        self._threads: list[threading.Thread] = []
        self._stuck_seen: set[str] = set()
        self._next_stuck_check = 0.0
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(
        self,
        on_terminal: Callable[[FileRecord], None],
        *,
        verify: Callable[[str], CaptureOutput | None],
        on_unverified: Callable[[], None] = lambda: None,
    ) -> None:
        """Start the receiver (if `[webhooks] listen`) and the sender (if `[[notify]]`).

        Deliveries are checked with `verify` (the capture as the API lists it); when the API
        cannot be asked, `on_unverified` (the poller's wake) hands the check on."""
        hooks = self.settings.webhooks
        if hooks.listen:
            if hooks.secret is None:
                raise ConfigError("[webhooks] listen is set but no signing secret is configured")
            secret = hooks.secret.get_secret_value()
            REDACTOR.add_secret(secret, min_length=4)
            try:
                self.receiver = WebhookReceiver(
                    hooks.listen,
                    hooks.path,
                    secret,
                    lambda delivery: apply_delivery(
                        self.journal, delivery, verify, on_terminal, on_unverified
                    ),
                    on_outcome=lambda outcome: self.webhook_outcomes.labels(outcome).inc(),
                )
            except OSError as exc:
                raise ConfigError(
                    f"[webhooks] listen = {hooks.listen!r}: cannot listen there ({exc.strerror}); "
                    "choose a free port, or stop what uses it"
                ) from None
            self.receiver.start()
        for target in self.settings.notify:
            if target.secret is not None:
                REDACTOR.add_secret(target.secret.get_secret_value(), min_length=4)
        if self.settings.notify:
            self._start_sender()

    def reload(self, settings: Settings) -> None:
        """A reloaded config (SIGHUP): new `[[notify]]` targets and `stuck_after_seconds`.

        `[webhooks]` waits for a restart (the reload keeps the running section). Events already
        queued for a target that is gone are dropped with a log line when they come due."""
        self.settings = settings
        self.outbox.targets = settings.notify
        self.deliverer.retarget(settings.notify)
        for target in settings.notify:
            if target.secret is not None:
                REDACTOR.add_secret(target.secret.get_secret_value(), min_length=4)
        if settings.notify and not self._threads:
            self._start_sender()
        self.outbox.wake.set()

    def _start_sender(self) -> None:
        thread = threading.Thread(target=self.deliverer.run, name="notify", daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        self.outbox.wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._http.close()

    # -- what happened --------------------------------------------------------------------------

    def _wanted(self, kind: str) -> bool:
        return any(kind in target.events for target in self.settings.notify)

    def capture_ended(self, record: FileRecord) -> None:
        """Queue `ready` / `failed` once the capture's actions are done; once per outcome, and
        only while the row still has this capture (`StaleCapture` otherwise)."""
        mark = action_key(record.capture_state, "notify")
        if mark in record.actions_done:
            return
        kind = "ready" if (record.capture_state or "").upper() == "READY" else "failed"
        # The server's reason for a failure (poller and webhook both keep it in `error`), with
        # what to do for a known slug; for `ready`, what Teleport did with the frames.
        reason = payloads.ended_reason(record, kind)
        viewer = self._viewer_url(record) if kind == "ready" and self._wanted(kind) else None
        history = self.journal.state_history(record.id, taken_only=True)
        event = payloads.capture_ended(
            record, history, reason=reason, viewer_url=viewer, preflight=self._preflight(record)
        )
        self.outbox.emit(event, file_id=record.id, mark=mark, eid=record.eid)

    def _preflight(self, record: FileRecord) -> dict[str, object] | None:
        return payloads.preflight_summary(self.journal.preflight_of(record.id), record)

    def file_held(self, record: FileRecord, row: PreflightRow, reason: str) -> None:
        """Queue `held` once per file version pre-flight holds. Not a file's final word, so
        the file is not marked notified (its `ready`/`failed` comes later, after `approve`)."""
        self.outbox.emit(payloads.held(record, row, reason))

    def _viewer_url(self, record: FileRecord) -> str | None:
        if record.viewer_url:  # journaled from the listing by the poller
            return record.viewer_url
        if self.viewer_url is None:
            return None
        try:
            return self.viewer_url(record)
        except Exception as exc:  # a missing link must not hold the notification back
            log.warning("no viewer URL for the notification", eid=record.eid, error=str(exc))
            return None

    def file_rejected(self, path: Path | str) -> None:
        record = self.journal.by_path(str(path))
        if (
            record is not None
            and record.upload_state == UploadState.REJECTED
            and "notify" not in record.actions_done
            and not is_lost_journal_hold(record.upload_state, record.error)
        ):
            self.outbox.emit(payloads.rejected(record, self._preflight(record)), file_id=record.id)

    def sweep(self) -> None:
        """Queue the `rejected` notifications a crash or an old version left out (start-up).

        An ended capture's notification waits for its actions (`daemon.finishing`), whose
        retry pass sends what a crash left out. A file held because the journal is new to its
        folder is not rejected: it waits for `approve`, and `status`/`health` show it as held
        (no `rejected` notification)."""
        for record in self.journal.needing_notification():
            if is_lost_journal_hold(record.upload_state, record.error):
                continue
            if record.upload_state == UploadState.REJECTED:
                event = payloads.rejected(record, self._preflight(record))
                self.outbox.emit(event, file_id=record.id)

    def auth_result(self, error: str | None) -> None:
        """Authentication failed (`error`) or worked (None); notify on the changes only."""
        with self._lock:
            since = self.journal.fact(AUTH_FACT) or None
            if error is not None and since is None:
                now = utc_seconds()
                self.journal.set_fact(AUTH_FACT, now)
                self.outbox.emit(payloads.auth(True, REDACTOR.redact(error), now))
            elif error is None and since is not None:
                self.journal.set_fact(AUTH_FACT, "")
                self.outbox.emit(payloads.auth(False, None, since))

    def check_stuck(self, *, force: bool = False) -> int:
        """Queue `stuck` for captures PROCESSING too long; checked once a minute at most."""
        limit = self.settings.poll.stuck_after_seconds
        if limit <= 0 or not self._wanted("stuck"):
            return 0
        if not force and time.monotonic() < self._next_stuck_check:
            return 0
        self._next_stuck_check = time.monotonic() + STUCK_CHECK_SECONDS
        now = self.now()
        found = 0
        for record in self.journal.awaiting_result():
            if (
                record.capture_state or ""
            ).upper() != "PROCESSING" or record.eid in self._stuck_seen:
                continue
            history = self.journal.state_history(record.id, taken_only=True)
            since = str(history[-1]["observed_at"]) if history else record.updated_at
            seconds = seconds_since(since, now)
            if seconds >= limit:
                self._stuck_seen.add(record.eid or "")
                found += self.outbox.emit(payloads.stuck(record, since, seconds))
        return found
