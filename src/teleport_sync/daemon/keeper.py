"""The daemon's own health: journaled facts, metrics gauges, the systemd STATUS line, and the
authentication probe. One owner, so the three mirrors of `health` never disagree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..api import (
    ApiError,
    AuthenticationError,
    TeleportClient,
    TransientError,
)
from ..api.authstate import AuthSnapshot, AuthState
from ..journal import Journal, JournalError, UploadState
from ..logging import get_logger
from ..status.ages import oldest_by_phase
from ..status.health import (
    record_auth,
    record_daemon_started,
    record_daemon_stopped,
    record_preflight,
    record_roots,
    status_line,
)
from ..status.metrics import Metrics
from ..status.report import ReportOptions, live_counts
from .sdnotify import SystemdNotifier

log = get_logger("teleport_sync.daemon")

# A probe that met a network problem (not an answer about the credentials) is tried again after.
PROBE_RETRY_SECONDS = 30.0
# Phase counts walk the whole journal: at most this often, unless something asks for it; and
# never more than 5 % of the time (a journal of 20,000 rows takes about a second).
REPORT_EVERY_SECONDS = 2.0
REPORT_SHARE = 0.05


class HealthKeeper:
    def __init__(
        self,
        journal: Journal,
        client: TeleportClient,
        metrics: Metrics,
        notifier: SystemdNotifier,
        *,
        stop: threading.Event,
        options: Callable[[], ReportOptions],
        auth_backoff: tuple[float, float] = (30.0, 900.0),
    ) -> None:
        self.journal = journal
        self.client = client
        self.metrics = metrics
        self.notifier = notifier
        self.stop = stop
        self._options = options
        self.auth = AuthState(
            base_seconds=auth_backoff[0], max_seconds=auth_backoff[1], on_change=self._auth_changed
        )
        self.roots: list[dict[str, Any]] = []
        # Told of every change of the authentication answer (the `auth` notification).
        self.on_auth_change: Callable[[AuthSnapshot], None] = lambda snapshot: None
        self._next_report = float("-inf")
        # The last count and the journal's change marker it was made at: an idle daemon does
        # not recount a journal nobody wrote to (its ages still move on with the clock).
        self._counted: tuple[tuple[int, int], tuple[list[dict[str, Any]], dict[str, int]]] | None
        self._counted = None
        self.metrics.auth_ok.set(-1)

    # -- facts ----------------------------------------------------------------------------------

    def started(self) -> None:
        record_daemon_started(self.journal)

    def stopped(self) -> None:
        try:
            record_daemon_stopped(self.journal)
        except JournalError as exc:
            log.warning("cannot journal that the daemon stopped", error=str(exc))

    def preflight_changed(self, enabled: bool, reason: str | None) -> None:
        """Pre-flight is on, or off and why (at start and on reload): journaled for `health`."""
        record_preflight(self.journal, enabled, reason)
        self.metrics.preflight_enabled.set(1 if enabled else 0)
        if not enabled:
            log.warning("pre-flight is off; uploads go on unjudged", reason=reason)

    def roots_changed(self, roots: list[dict[str, Any]]) -> None:
        self.roots = roots
        record_roots(self.journal, roots)
        self.report(force=True)

    def _auth_changed(self, snapshot: AuthSnapshot) -> None:
        if snapshot.ok is False:
            log.error(
                "authentication failed; uploads and polling wait and try again with backoff. "
                "Check [api] client_id and the client secret, then: teleport-sync health",
                error=snapshot.error,
            )
        else:
            log.info("authentication works")
        try:
            record_auth(self.journal, snapshot)
        except JournalError as exc:
            log.warning("cannot journal the authentication state", error=str(exc))
        self.on_auth_change(snapshot)
        self.report(force=True)

    # -- gauges and STATUS ----------------------------------------------------------------------

    def report_counts(self, *, waiting: int) -> None:
        """Files and captures by state in the metrics, then the STATUS line (`waiting`: files
        waiting for an upload slot)."""
        counts = self.journal.counts_by_state()
        for state in UploadState:
            self.metrics.files.labels(state).set(counts.get(state, 0))
        for state, n in self.journal.capture_counts().items():
            self.metrics.captures.labels(state).set(n)
        self.report(extra=f"{waiting} waiting for an upload slot")

    def report(self, *, force: bool = False, extra: str = "") -> None:
        now = time.monotonic()
        if not force and now < self._next_report:
            return
        rows, counts = self._counts(force)
        self._fleet_gauges(rows)
        took = time.monotonic() - now
        self._next_report = now + max(REPORT_EVERY_SECONDS, took / REPORT_SHARE)
        for phase, n in counts.items():
            self.metrics.phases.labels(phase).set(n)
        auth = self.auth.snapshot
        self.metrics.auth_ok.set(-1 if auth.ok is None else int(auth.ok))
        unwatched = sum(1 for r in self.roots if not r.get("watched"))
        claimed = any(r.get("claimed_by") for r in self.roots)
        self.metrics.roots_unwatched.set(unwatched)
        self.metrics.healthy.set(int(auth.ok is not False and unwatched == 0 and not claimed))
        line = status_line(counts, auth, self.roots)
        self.notifier.status(f"{line}; {extra}" if extra else line)

    def _counts(self, force: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
        marker = self.journal.change_marker()
        if force or self._counted is None or self._counted[0] != marker:
            self._counted = (marker, live_counts(self.journal, self._options()))
        return self._counted[1]

    def _fleet_gauges(self, rows: list[dict[str, Any]]) -> None:
        """How long files wait, and the cleanup backlog: from the rows just read, so the
        gauges and the phase counts describe the same moment."""
        for phase, seconds in oldest_by_phase(rows, self.journal.failing_since()).items():
            self.metrics.oldest.labels(phase).set(seconds)
        self.metrics.captures_to_delete.set(len(self.journal.discarded_captures()))

    # -- the authentication probe ---------------------------------------------------------------

    def watch_auth(self) -> None:
        """Thread: ask for a token at start, then again (with backoff) while it fails."""
        while not self.stop.is_set():
            if self.auth.snapshot.ok is True:
                self.auth.failing.wait(5.0)  # uploads and polls report failures themselves
                continue
            wait = self.auth.blocked_for()
            if wait is not None:
                self.stop.wait(wait)
                continue
            self.probe()

    def probe(self) -> None:
        try:
            self.client.access_token(force=self.auth.snapshot.ok is False)
        except AuthenticationError as exc:
            self.auth.failed(str(exc))
        except (TransientError, ApiError) as exc:
            log.warning("cannot reach the token endpoint; will try again", error=str(exc))
            self.stop.wait(PROBE_RETRY_SECONDS)
        else:
            self.auth.succeeded()
