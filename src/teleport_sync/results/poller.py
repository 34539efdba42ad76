"""Follow captures until READY, FAILED or ERROR (any case): capture states -> the journal's history.

Calls the API only while some journaled capture is not terminal; otherwise it sleeps until
an upload finishes (`wake`). Unknown states are recorded like any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..api import ApiError, AuthenticationError, TeleportClient
from ..api.authstate import AuthState
from ..journal import FileRecord, Journal, Source
from ..logging import get_logger
from ..models import is_failed, is_terminal

log = get_logger("teleport_sync.poller")


class Poller:
    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        *,
        interval_seconds: float,
        on_terminal: Callable[[FileRecord], None],
        stop: threading.Event,
        page_size: int = 100,
        auth: AuthState | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.interval = interval_seconds
        self.on_terminal = on_terminal
        self.stop = stop
        self.wake = threading.Event()
        self.page_size = page_size
        # Shared with the uploads: while authentication fails, polls wait for its backoff.
        self.auth = auth
        self.polls = 0
        self._last_poll = float("-inf")
        self._missing_warned: set[str] = set()

    def poll_once(self) -> int:
        """One pass; returns how many captures are still not terminal."""
        active = self.journal.awaiting_result()
        if not active:
            return 0
        if self.auth is not None and self.auth.blocked_for() is not None:
            return len(active)
        self.polls += 1
        self._last_poll = time.monotonic()
        try:
            by_eid = {c.eid: c for c in self.client.iter_captures(page_size=self.page_size)}
        except AuthenticationError as exc:
            if self.auth is not None:
                self.auth.failed(str(exc))
            raise
        if self.auth is not None:
            self.auth.succeeded()
        remaining = 0
        for record in active:
            capture = by_eid.get(record.eid or "")
            if capture is None:
                if record.eid not in self._missing_warned:
                    self._missing_warned.add(record.eid or "")
                    log.warning(
                        "capture no longer in the account (deleted?)",
                        path=record.path,
                        eid=record.eid,
                    )
                continue
            verdict = self.journal.observe_reported(record.id, capture, Source.POLL)
            if verdict.applied:
                log.info("capture state", path=record.path, eid=record.eid, state=capture.state)
                if is_failed(capture.state):
                    log.warning(
                        "capture failed on the server",
                        path=record.path,
                        eid=record.eid,
                        reason=capture.error_reason_slug,
                        description=capture.state_description,
                    )
            if not is_terminal(capture.state):
                remaining += 1
            elif verdict.applied:  # an ending: the rows followed here are all still going
                self.on_terminal(self.journal.get(record.id))
        return remaining

    def run(self) -> None:
        while not self.stop.is_set():
            # Woken by every finished upload, but never more than one listing per interval:
            # a burst of 1,000 uploads must not become 1,000 listings.
            pause = self._last_poll + self.interval - time.monotonic()
            if pause > 0 and self.stop.wait(pause):
                return
            try:
                remaining = self.poll_once()
            except AuthenticationError as exc:
                log.warning("polling capture states failed; will retry", error=str(exc))
                remaining = 1
            except ApiError as exc:
                log.warning("polling capture states failed; will retry", error=str(exc))
                remaining = 1
            except Exception:  # keep following captures whatever happens
                log.exception("polling failed unexpectedly; will retry")
                remaining = 1
            if remaining:
                self.stop.wait(self.interval)
            else:
                # Nothing to follow: no API calls until an upload finishes (or we stop).
                self.wake.wait()
            self.wake.clear()
