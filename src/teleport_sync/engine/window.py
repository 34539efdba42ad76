"""How many parts of one file are in flight: widened while throughput grows, narrowed on errors.

On a fast local link a few parts fill it; on a long path each connection is held back by its
round trip (a TCP window's worth of bytes per RTT), and only more connections in flight fill the
link. So the window starts at `[upload] concurrency` and works in rounds: a round lasts until as
many parts as the width (at least `settle`) are acknowledged, and its throughput (bytes
acknowledged over its time) is set against the round before. The first round probes twice as
wide, unless each part in it already moved faster than `unbound` (a LAN, or loopback: no round
trip holds it back, and a wider round would only share the same link or CPU). Then: throughput
grew nearly in proportion to the width (`burst` of it: each connection is window-limited, more
of them is all it takes), twice as wide again, as TCP's slow start doubles; grew by at least
`gain`, one more; did not grow, the link (or the CPU) is full: back to the narrower width, and
hold it. A part that failed or timed out halves it (never below one; once for the parts that
were in flight together), and growth starts again. It never passes `cap` (`[upload]
max_parts_in_flight`).

Pure rule plus a slot counter: time is passed in (`now`), so the rule is tested with a fake
clock; `acquire`/`release` are what the part threads call around each attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FlightWindow:
    start: int
    cap: int
    settle: int = 2
    gain: float = 0.08
    burst: float = 0.75
    # A part moving faster than this (bytes/s) is not held back by its round trip: TCP's
    # window is not what limits it, so more parts in flight would only share the same link or
    # CPU (probing wider there costs a round at a width that is slower, not faster).
    unbound: float = 32 * 1024 * 1024
    limit: int = field(init=False)
    _in_flight: int = field(default=0, init=False)
    # Parts started before the last failure say nothing of the width after it.
    _epoch: int = field(default=0, init=False)
    _round_started: float | None = field(default=None, init=False)
    _round_bytes: int = field(default=0, init=False)
    _round_parts: int = field(default=0, init=False)
    _last_rate: float = field(default=0.0, init=False)
    _last_limit: int = field(default=0, init=False)
    _growing: bool = field(default=True, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        self.cap = max(1, self.cap)
        self.limit = max(1, min(self.start, self.cap))

    # -- the slots ------------------------------------------------------------------------------

    def acquire(self, stopped: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a slot; False if `stopped` says so first (checked twice a second)."""
        with self._cond:
            while self._in_flight >= self.limit:
                if stopped():
                    return False
                self._cond.wait(0.5)
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    # -- the rule -------------------------------------------------------------------------------

    def part_started(self, now: float) -> int:
        """A part attempt starts: its epoch (give it back to `part_done`)."""
        with self._cond:
            if self._round_started is None:
                self._round_started = now
            return self._epoch

    def part_done(self, nbytes: int, now: float, epoch: int) -> None:
        """A part was acknowledged: count it, and judge the width at the end of a round."""
        with self._cond:
            if epoch != self._epoch or self._round_started is None:
                return
            self._round_bytes += nbytes
            self._round_parts += 1
            if self._round_parts < max(self.settle, self.limit):
                return
            rate = self._round_bytes / max(now - self._round_started, 1e-6)
            self._judge(rate)
            self._round_bytes, self._round_parts, self._round_started = 0, 0, now

    def _judge(self, rate: float) -> None:
        width, last, before = self.limit, self._last_rate, self._last_limit
        if self._growing and not last and rate / width >= self.unbound:
            self._growing = False  # each part already runs free: nothing to gain from width
        if self._growing and width < self.cap:
            grew = rate / last if last else 0.0
            widened = width / before if before else 1.0
            if not last or (widened > 1 and grew >= 1 + self.burst * (widened - 1)):
                self.limit = min(self.cap, width * 2)  # the first probe, or in proportion
            elif grew >= 1 + self.gain:
                self.limit = width + 1
            else:  # no faster for being wider: back to the narrower width, and hold it
                self.limit = min(width, before)
                self._growing = False
        self._last_rate, self._last_limit = rate, width
        self._cond.notify_all()

    def part_failed(self, epoch: int) -> None:
        """A part failed or timed out: half as many in flight; growth may start again.

        Once per event, as TCP narrows once per window of losses: the parts in flight together
        when a path drops or stalls fail together, and those started before the last narrowing
        (an older `epoch`) say nothing new, so a reset of every connection at once halves the
        width once, not down to one.
        """
        with self._cond:
            if epoch != self._epoch:
                return
            self.limit = max(1, self.limit // 2)
            self._growing = True
            self._last_rate, self._last_limit = 0.0, 0
            self._epoch += 1
            self._round_bytes, self._round_parts, self._round_started = 0, 0, None
