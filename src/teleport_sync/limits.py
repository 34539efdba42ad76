"""Operator limits, as pure logic with the clock injected: bandwidth (a rate or an rclone-style
timetable), one shared limiter for every part of every file, and frame/capture budgets.

Rates are bytes per second, written as rclone writes them: `"10M"` is 10 MiB/s, suffixes
`B K M G T` (any case, an optional `i`/`iB`), a bare number is KiB/s (rclone's default unit),
`"off"` is no limit and `"0"` closes the upload window. `"UP:DOWN"` is accepted and its upload
half used. A timetable is a list of `[DAY[-DAY] ]HH:MM,RATE` entries: `"08:00,512k 19:00,off"`
(every day), rclone's `"Mon-08:00,1M Sat-00:00,off"`, or a day range scoping the entries after
it, `"Mon-Fri 08:00,10M 19:00,off"`. The rate in force is the latest entry at or before now
in the week, wrapping round from the week's last entry, as in rclone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# A rate: None = unlimited, 0 = upload window closed, > 0 = bytes per second.
Rate = float | None

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$", re.IGNORECASE)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
MINUTES_PER_WEEK = 7 * 24 * 60


class LimitError(ValueError):
    """A rate or timetable that cannot be read; the message quotes it and shows the syntax."""


def parse_rate(text: str) -> Rate:
    """`"off"` -> None, `"0"` -> 0.0 (closed), `"10M"` -> 10485760.0, `"512"` -> 512 KiB/s."""
    value = text.strip()
    if ":" in value and "," not in value:
        value = value.split(":", 1)[0]  # rclone's "UP:DOWN": the upload half is ours
    if value.lower() in ("off", "", "-1"):
        return None
    match = _RATE.match(value)
    if match is None:
        raise LimitError(f'{text!r} is not a rate; write e.g. "10M" (MiB/s), "512k", "off" or "0"')
    number, unit = float(match.group(1)), match.group(2).lower() or "k"
    return number * _UNITS[unit]


def describe_rate(rate: Rate) -> str:
    if rate is None:
        return "off (no limit)"
    if rate == 0:
        return "0 (upload window closed)"
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if rate >= size:
            return f"{rate / size:g}{unit}/s"
    return f"{rate:g}B/s"


def _day(text: str) -> int:
    lowered = text.lower()
    if lowered in _DAYS:
        return _DAYS.index(lowered)
    if lowered in _FULL_DAYS:
        return _FULL_DAYS.index(lowered)
    raise LimitError(f"{text!r} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun")


def _day_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    start = _day(first)
    end = _day(last) if last else start
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _minute(text: str) -> int:
    match = _TIME.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise LimitError(f"{text!r} is not a time of day; write HH:MM, e.g. 08:00")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True)
class Timetable:
    """Rates by minute of the week (Monday 00:00 = 0); one entry means a constant rate."""

    entries: tuple[tuple[int, Rate], ...]
    text: str = ""

    def rate_at(self, when: datetime) -> Rate:
        minute = when.weekday() * 1440 + when.hour * 60 + when.minute
        current = self.entries[-1][1]  # before the week's first entry: the last one wraps round
        for at, rate in self.entries:
            if at > minute:
                break
            current = rate
        return current

    @property
    def constant(self) -> bool:
        return len(self.entries) == 1

    def next_change(self, when: datetime) -> int:
        """Minutes from `when` to the next entry (for saying when a closed window opens)."""
        minute = when.weekday() * 1440 + when.hour * 60 + when.minute
        later = [at for at, _ in self.entries if at > minute]
        target = later[0] if later else self.entries[0][0] + MINUTES_PER_WEEK
        return target - minute

    def opens_in(self, when: datetime) -> int | None:
        """Minutes from `when` until the window opens (0: open now; None: no slot opens it)."""
        if self.rate_at(when) != 0:
            return 0
        minute = when.weekday() * 1440 + when.hour * 60 + when.minute
        # The entries after now this week, then next week's from the start: one lap round.
        ahead = [(at - minute, rate) for at, rate in self.entries if at > minute]
        ahead += [(at + MINUTES_PER_WEEK - minute, rate) for at, rate in self.entries]
        return next((distance for distance, rate in ahead if rate != 0), None)


def parse_bwlimit(text: str) -> Timetable:
    """A rate or a timetable (see the module's doc); raises LimitError naming the bad part."""
    tokens = text.split()
    if len(tokens) == 1 and "," not in tokens[0]:
        return Timetable(((0, parse_rate(tokens[0])),), text)
    if not tokens:
        return Timetable(((0, None),), text)
    days = list(range(7))
    by_minute: dict[int, Rate] = {}
    for token in tokens:
        if "," not in token:
            days = _day_range(token)  # "Mon-Fri": scopes the entries that follow
            continue
        when, _, rate_text = token.partition(",")
        rate = parse_rate(rate_text)
        entry_days = days
        if "-" in when:  # rclone's "Mon-08:00"
            day_text, _, when = when.partition("-")
            entry_days = [_day(day_text)]
        minute = _minute(when)
        for day in entry_days:
            by_minute[day * 1440 + minute] = rate
    return Timetable(tuple(sorted(by_minute.items())), text)


def check_bwlimit(text: str) -> str:
    """For config validation: the text if it parses, else a ValueError saying the syntax."""
    try:
        parse_bwlimit(text)
    except LimitError as exc:
        raise ValueError(
            f'{exc} (bwlimit is "off", a rate such as "10M", or a timetable such as '
            '"Mon-Fri 08:00,10M 19:00,off")'
        ) from None
    return text


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class BandwidthLimiter:
    """One token bucket shared by every part of every file (GCRA: a theoretical arrival time).

    `consume(n)` is called before `n` bytes go out and sleeps until the schedule allows them.
    With no limit in force it returns at once without taking the lock. A closed window (rate
    0) does not block bytes already on their way: the gate stops new parts instead.
    """

    def __init__(
        self,
        timetable: Timetable,
        *,
        clock: Clock,
        now: Callable[[], datetime],
        on_change: Callable[[Rate], None] | None = None,
        burst_seconds: float = 0.1,
        recheck_seconds: float = 1.0,
    ) -> None:
        self.timetable = timetable
        self._clock = clock
        self._now = now
        self._on_change = on_change or (lambda rate: None)
        self._burst = burst_seconds
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._due = clock.monotonic()  # when the bytes granted so far have all gone out
        self._rate: Rate = timetable.rate_at(now())
        self._checked = clock.monotonic()
        self._on_change(self._rate)

    @property
    def rate(self) -> Rate:
        """The rate in force now (read again from the timetable at most once a second)."""
        if self.timetable.constant:
            return self._rate
        at = self._clock.monotonic()
        if at - self._checked >= self._recheck:
            self._checked = at
            rate = self.timetable.rate_at(self._now())
            with self._lock:  # decided under the lock: one thread reports a change, once
                changed = rate != self._rate
                if changed:
                    self._rate = rate
                    self._due = at  # a new rate starts afresh, owing nothing
            if changed:
                self._on_change(rate)
        return self._rate

    def set_timetable(self, timetable: Timetable) -> None:
        """Follow another schedule from now on (a reloaded config)."""
        rate = timetable.rate_at(self._now())
        with self._lock:
            self.timetable = timetable
            changed, self._rate = rate != self._rate, rate
            self._due = self._checked = self._clock.monotonic()
        if changed:
            self._on_change(rate)

    @property
    def window_open(self) -> bool:
        return self.rate != 0

    def opens_in_seconds(self) -> float | None:
        """Seconds until the timetable opens the window (0 while open; None: it never does)."""
        now = self._now()
        minutes = self.timetable.opens_in(now)
        if minutes is None:
            return None
        # Slots start on the minute: what is left of the current minute is already gone.
        return max(0.0, minutes * 60.0 - now.second - now.microsecond / 1e6) if minutes else 0.0

    def closed_reason(self) -> str | None:
        """Why no new part may start now, or None."""
        if self.window_open:
            return None
        closed = f"the upload window is closed by [upload] bwlimit ({self.timetable.text!r})"
        if self.timetable.constant:
            return f"{closed}; set another rate to open it"
        minutes = self.timetable.next_change(self._now())
        return f"{closed}; the schedule changes in {minutes // 60} h {minutes % 60} min"

    def consume(self, nbytes: int) -> None:
        rate = self.rate
        if not rate:  # None: unlimited; 0: closed, bytes in flight finish
            return
        with self._lock:
            now = self._clock.monotonic()
            start = max(self._due, now - self._burst)
            self._due = start + nbytes / rate
            wait = start - now
        if wait > 0:
            self._clock.sleep(wait)


# -- budgets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Limits on what a station may spend (0 = no limit) and the optional prices."""

    max_frames_per_capture: int = 0
    max_frames_per_day: int = 0
    max_captures_per_day: int = 0
    price_per_capture: float | None = None
    price_per_frame: float | None = None
    currency: str = ""


@dataclass(frozen=True)
class DayUsage:
    frames: int = 0
    captures: int = 0


def budget_problem(budget: Budget, frames: int | None, today: DayUsage) -> str | None:
    """The sentence saying which limit one more capture of `frames` would exceed, or None."""
    n = frames or 0
    if budget.max_frames_per_capture and n > budget.max_frames_per_capture:
        over = n - budget.max_frames_per_capture
        return (
            f"{n} frames exceed [budget] max_frames_per_capture "
            f"({budget.max_frames_per_capture}) by {over}"
        )
    if budget.max_captures_per_day and today.captures + 1 > budget.max_captures_per_day:
        return (
            f"{today.captures} captures were uploaded today (UTC); one more exceeds [budget] "
            f"max_captures_per_day ({budget.max_captures_per_day}) by 1"
        )
    if budget.max_frames_per_day and today.frames + n > budget.max_frames_per_day:
        over = today.frames + n - budget.max_frames_per_day
        return (
            f"{today.frames} frames were uploaded today (UTC); {n} more exceed [budget] "
            f"max_frames_per_day ({budget.max_frames_per_day}) by {over}"
        )
    return None


def estimated_cost(budget: Budget, frames: int | None) -> float | None:
    """`price_per_capture + price_per_frame * frames`, or None when no price is configured."""
    if budget.price_per_capture is None and budget.price_per_frame is None:
        return None
    cost = budget.price_per_capture or 0.0
    if budget.price_per_frame is not None and frames is not None:
        cost += budget.price_per_frame * frames
    return round(cost, 6)


def bwlimit_now(spec: str, when: datetime) -> dict[str, object]:
    """What `health` shows of `[upload] bwlimit` at local time `when`."""
    rate = parse_bwlimit(spec).rate_at(when)
    return {
        "bwlimit": spec,
        "bytes_per_second": rate,
        "window_open": rate != 0,
        "limit": describe_rate(rate),
    }
