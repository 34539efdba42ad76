"""Signed webhooks from the emulator, as Teleport sends them when processing ends.

When `webhook_url` is set, each completed capture is announced once it reads READY or FAILED:
`POST {"eid", "sid", "state": "READY" | "ERROR", "error_reason"}` with `X-Teleport-Signature`,
the hex HMAC-SHA256 of the body under `webhook_secret`. A failed capture is announced as `ERROR`
(the webhook documentation's name) whatever the API's listing calls it. Attempts that meet a
connection error or a 5xx are repeated `webhook_attempts` times in all, after a short pause.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .backend import Backend, Capture


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sent:
    eid: str
    state: str
    status: int | None  # None: no answer (connection refused, timeout)
    attempts: int


@dataclass
class WebhookSender:
    backend: Backend
    retry_pause_seconds: float = 0.5
    sent: list[Sent] = field(default_factory=list)
    _timers: set[threading.Timer] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def capture_completed(self, capture: Capture) -> None:
        """Called by the backend after `/uploaded`: announce the end of processing, later."""
        if self.backend.config.webhook_url:
            self._later(self.backend.config.processing_delay_seconds, capture)

    def _later(self, delay: float, capture: Capture) -> None:
        with self._lock:
            if self._closed:
                return
            timer = threading.Timer(max(0.0, delay) + 0.02, self._fire, args=(capture,))
            timer.daemon = True
            self._timers.add(timer)
        timer.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()

    def _fire(self, capture: Capture) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())  # type: ignore[arg-type]
        state = self.backend.state_of(capture)
        if state in ("CREATED", "UPLOADING", "UPLOADED", "PROCESSING"):
            if capture.eid in self.backend.captures:  # not deleted meanwhile
                self._later(0.1, capture)
            return
        body: dict[str, Any] = {"eid": capture.eid, "sid": capture.sid, "state": state}
        if state != "READY":  # FAILED, or ERROR where the listing says so too
            body["state"] = "ERROR"
            body["error_reason"] = capture.verdict
        self.send(body)

    def send(self, body: dict[str, Any]) -> Sent:
        config = self.backend.config
        raw = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Teleport-Signature": signature(config.webhook_secret, raw),
        }
        status: int | None = None
        attempts = 0
        for attempts in range(1, max(1, config.webhook_attempts) + 1):
            try:
                status = httpx.post(
                    str(config.webhook_url), content=raw, headers=headers, timeout=5.0
                ).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and status < 500:
                break
            if attempts < config.webhook_attempts and not self._closed:
                threading.Event().wait(self.retry_pause_seconds * attempts)
        sent = Sent(body["eid"], body["state"], status, attempts)
        with self._lock:
            self.sent.append(sent)
        return sent
