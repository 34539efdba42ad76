"""Retry policy: what is retryable, how long to wait, and a loop that takes an injected clock.

Exponential backoff with full jitter (sleep = uniform(0, min(cap, base * 2**attempt))), except
that a server's `Retry-After` is honoured as given. Nothing here imports the rest of the package.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock. Tests pass a fake with the same two methods."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class RetryableError(Exception):
    """An error worth another attempt; `retry_after` is the server's wish, if it said one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts and how long between them.

    `max_attempts` counts the first try. `max_retry_after` caps what a server may ask for, so a
    broken header cannot park a worker for a day.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    # The jitter's floor as a fraction of the ceiling: 0 is full jitter (requests, parts);
    # 0.5 never comes back sooner than half the ceiling (a whole file tried again later).
    floor_fraction: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number `attempt` (0-based), jittered above `floor_fraction`."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return self.rng.uniform(ceiling * self.floor_fraction, ceiling)


def call_with_retries(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    clock: Clock,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    pacer: Pacer | None = None,
) -> T:
    """Run `operation` until it returns, raises a non-retryable error, or attempts run out.

    Each attempt waits for `pacer`'s slot and feeds it its outcome; without one, a pacer of
    this call's own. A loop, not recursion, so a long outage cannot blow the stack. The last
    error is re-raised.
    """
    pacer = pacer or Pacer(policy, clock)
    attempt = 0
    while True:
        pacer.wait()
        try:
            result = operation()
        except RetryableError as exc:
            attempt += 1
            if attempt >= policy.max_attempts:
                raise
            delay = pacer.failed(attempt - 1, exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            continue
        except BaseException:
            pacer.succeeded()  # the remote answered: a refusal, not a sign of overload
            raise
        pacer.succeeded()
        return result


class Pacer:
    """The pace of calls to one remote (the API, or storage), shared by every thread using it.

    After rclone's `lib/pacer`: before each call a thread waits for the pacer's next slot, and
    every outcome feeds it. A failure (or a server's `Retry-After`) pushes the slot out for
    everyone, so one thread's 503 SlowDown slows them all, and raises the shared sleep: the
    floor of the next failure's wait, whoever sees it. Successes halve that sleep back to zero.
    Attempts are still counted by each caller, against its own `RetryPolicy.max_attempts`.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._sleep = 0.0
        self._not_before = float("-inf")
        # For the metrics: calls that had to wait for the slot, and for how long in all.
        self.waits = 0
        self.waited_seconds = 0.0

    @property
    def sleep(self) -> float:
        """The shared sleep now: 0 while the remote answers, higher after it refused."""
        return self._sleep

    def wait(self) -> None:
        """Block until the next slot: at once unless a recent failure asked everyone to wait."""
        with self._lock:
            delay = self._not_before - self.clock.monotonic()
            if delay > 0:
                self.waits += 1
                self.waited_seconds += delay
        if delay > 0:
            self.clock.sleep(delay)

    def once(self, operation: Callable[[], T]) -> T:
        """One attempt in the next slot, for a caller that retries by itself. A refusal that
        asks for a pause (429/503 with Retry-After) still slows every caller of the remote."""
        self.wait()
        try:
            result = operation()
        except RetryableError as exc:
            if exc.retry_after is not None:
                self.failed(0, exc.retry_after)
            raise
        self.succeeded()
        return result

    def failed(
        self, attempt: int, retry_after: float | None = None, *, policy: RetryPolicy | None = None
    ) -> float:
        """Retry number `attempt` (0-based) is due; returns how long everyone now waits.

        `policy` is the caller's backoff when it is not the pacer's own (the engine's parts)."""
        backoff = (policy or self.policy).backoff(attempt, retry_after)
        with self._lock:
            delay = self._sleep = max(backoff, self._sleep)
            self._not_before = max(self._not_before, self.clock.monotonic() + delay)
        return delay

    def succeeded(self) -> None:
        with self._lock:
            # Halving, not resetting: a remote that just recovered may refuse again soon.
            self._sleep = self._sleep / 2 if self._sleep > self.policy.base_delay / 8 else 0.0
