"""Retry policy: what is retryable, how long to wait, and a loop that takes an injected clock.

Exponential backoff with full jitter (sleep = uniform(0, min(cap, base * 2**attempt))), except
that a server's `Retry-After` is honoured as given. Nothing here imports the rest of the package.
"""

from __future__ import annotations

import random
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
) -> T:
    """Run `operation` until it returns, raises a non-retryable error, or attempts run out.

    A loop, not recursion, so a long outage cannot blow the stack. The last error is re-raised.
    """
    attempt = 0
    while True:
        try:
            return operation()
        except RetryableError as exc:
            attempt += 1
            if attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt - 1, exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            clock.sleep(delay)
