"""Is authentication working? One shared answer, with backoff while it is not.

A wrong client secret fails every request the same way; retrying each file on its own schedule
would hammer the token endpoint and bury the cause in per-file errors. Instead the first
`AuthenticationError` marks authentication as failing; until the backoff has passed, callers ask
`blocked_for()` and wait instead of calling the API. The backoff doubles per failure up to a
ceiling and resets on any success. Pure: the clock and the change listener are injected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..retry import Clock, SystemClock
from ..timestamps import utc_seconds


@dataclass(frozen=True)
class AuthSnapshot:
    ok: bool | None  # None: not known yet
    error: str | None
    since: str | None  # ISO time the current answer began


_now_iso = utc_seconds


class AuthState:
    def __init__(
        self,
        *,
        base_seconds: float = 30.0,
        max_seconds: float = 900.0,
        clock: Clock | None = None,
        wall: Callable[[], str] = _now_iso,
        on_change: Callable[[AuthSnapshot], None] = lambda snapshot: None,
    ) -> None:
        self._base = base_seconds
        self._max = max_seconds
        self._clock = clock or SystemClock()
        self._wall = wall
        self._on_change = on_change
        self._lock = threading.Lock()
        self._snapshot = AuthSnapshot(None, None, None)
        self._delay = 0.0
        self._blocked_until = 0.0
        self.failing = threading.Event()

    @property
    def snapshot(self) -> AuthSnapshot:
        with self._lock:
            return self._snapshot

    def failed(self, error: str) -> float:
        """Authentication was refused; returns how long callers now wait before trying again."""
        with self._lock:
            was = self._snapshot
            self._delay = self._base if was.ok is not False else min(self._max, self._delay * 2)
            self._blocked_until = self._clock.monotonic() + self._delay
            changed = was.ok is not False or was.error != error
            if changed:
                since = was.since if was.ok is False and was.since else self._wall()
                self._snapshot = AuthSnapshot(False, error, since)
            snapshot, delay = self._snapshot, self._delay
        self.failing.set()
        if changed:
            self._on_change(snapshot)
        return delay

    def succeeded(self) -> None:
        """A request was authenticated."""
        with self._lock:
            if self._snapshot.ok is True:
                return
            self._snapshot = AuthSnapshot(True, None, self._wall())
            self._delay = 0.0
            self._blocked_until = 0.0
            snapshot = self._snapshot
        self.failing.clear()
        self._on_change(snapshot)

    def waiting(self) -> bool:
        """Whether calls are held back now (without claiming the next try, as `blocked_for`)."""
        with self._lock:
            return self._snapshot.ok is False and self._blocked_until > self._clock.monotonic()

    def blocked_for(self) -> float | None:
        """Seconds to wait before the next API call, or None when this caller may go ahead.

        While authentication is failing, one caller per backoff period is let through (its call
        is the next try); the others are told to wait. Never a spin, never a stampede.
        """
        with self._lock:
            if self._snapshot.ok is not False:
                return None
            now = self._clock.monotonic()
            remaining = self._blocked_until - now
            if remaining > 0:
                return remaining
            self._blocked_until = now + self._delay  # this caller's try; others wait for it
            return None
