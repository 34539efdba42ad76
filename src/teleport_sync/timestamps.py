"""Times as the journal, `status` and notifications write them: UTC, ISO 8601, one format.

Journal times are compared as text in SQL (`next_attempt_at <= ?`), which is right only when
every one of them has the same shape: UTC offset and microseconds, always. Every module that
writes a time into the journal uses `utc_now`/`utc_in`; `utc_seconds` is for people and payloads
(no false precision). Each takes the current time as an argument where a caller has an injected
clock, so tests need no patching.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    # An aware time in another zone is shifted to UTC (text comparison needs one offset).
    return now.astimezone(UTC) if now.tzinfo is not None else now


def utc_now(now: datetime | None = None) -> str:
    """The time as journal text: UTC, microseconds (sorts and compares as text)."""
    return _now(now).isoformat(timespec="microseconds")


def utc_in(seconds: float, now: datetime | None = None) -> str:
    """`seconds` from now, as journal text: when a retry or the next attempt is due."""
    return utc_now(_now(now) + timedelta(seconds=seconds))


def utc_seconds(now: datetime | None = None) -> str:
    """The time to the second, for people and notification payloads."""
    return _now(now).isoformat(timespec="seconds")


def parse_utc(text: str) -> datetime:
    """A time written by any of the above (or another ISO 8601 time with an offset)."""
    return datetime.fromisoformat(text)


def seconds_since(text: str, now: datetime | None = None) -> float:
    """How long ago `text` was (negative for a time still to come)."""
    return (_now(now) - parse_utc(text)).total_seconds()
