"""Authentication failures: one shared state with backoff; mirrored in gauges and STATUS."""

from __future__ import annotations

import threading
from pathlib import Path

from teleport_sync.api.authstate import AuthSnapshot, AuthState
from teleport_sync.daemon.keeper import HealthKeeper
from teleport_sync.daemon.sdnotify import SystemdNotifier
from teleport_sync.journal import Journal
from teleport_sync.status.metrics import Metrics
from teleport_sync.status.report import ReportOptions

from .conftest import FakeClock


def test_backoff_doubles_lets_one_caller_through_and_resets(fake_clock: FakeClock) -> None:
    changes: list[AuthSnapshot] = []
    auth = AuthState(base_seconds=30, max_seconds=100, clock=fake_clock, on_change=changes.append)
    assert auth.blocked_for() is None and not auth.waiting()
    assert auth.failed("401") == 30
    assert auth.waiting() and auth.blocked_for() == 30
    fake_clock.advance(30)
    assert auth.blocked_for() is None  # this caller tries...
    assert auth.blocked_for() == 30  # ...the others wait for its answer
    assert auth.failed("401") == 60
    fake_clock.advance(60)
    assert auth.blocked_for() is None
    assert auth.failed("401") == 100  # the ceiling
    assert len(changes) == 1 and changes[0].ok is False  # said once, not per failure
    since = changes[0].since
    assert auth.snapshot.since == since
    auth.succeeded()
    auth.succeeded()
    assert [c.ok for c in changes] == [False, True]
    assert auth.blocked_for() is None
    assert auth.failed("401 again") == 30  # a new failure starts from the base again


class Recorder(SystemdNotifier):
    def __init__(self) -> None:
        super().__init__(environ={})
        self.statuses: list[str] = []

    def status(self, text: str) -> bool:
        self.statuses.append(text)
        return True


def test_gauges_and_status_line_follow_auth_and_roots(tmp_path: Path) -> None:
    metrics, notifier = Metrics(), Recorder()
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.note_sighting("/in/a.zip", "/in", "waiting")
        keeper = HealthKeeper(
            journal,
            None,  # type: ignore[arg-type]  # the probe is not used here
            metrics,
            notifier,
            stop=threading.Event(),
            options=ReportOptions,
        )
        keeper.roots_changed([{"path": "/in", "watched": True, "problem": None}])
        assert metrics.healthy._value.get() == 1 and metrics.auth_ok._value.get() == -1
        assert metrics.phases.labels("settling")._value.get() == 1
        keeper.auth.failed("authentication failed at http://x/token: HTTP 401")
        assert metrics.healthy._value.get() == 0 and metrics.auth_ok._value.get() == 0
        assert notifier.statuses[-1].startswith("AUTHENTICATION FAILING since ")
        assert journal.fact("auth") and '"ok": false' in str(journal.fact("auth"))
        keeper.roots_changed([{"path": "/in", "watched": False, "problem": "gone"}])
        assert "not watched: /in" in notifier.statuses[-1]
        assert metrics.roots_unwatched._value.get() == 1
        keeper.auth.succeeded()
        assert metrics.auth_ok._value.get() == 1 and metrics.healthy._value.get() == 0
        assert "1 settling" in notifier.statuses[-1]
