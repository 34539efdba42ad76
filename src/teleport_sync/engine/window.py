"""How many parts of one file are in flight: widened while throughput grows, narrowed on errors.

On a fast local link a few parts fill it; on a long path each connection is held back by its
round trip (a TCP window's worth of bytes per RTT), and only more connections in flight fill the
link: as many as the link's rate times the round trip over one connection's window (the
bandwidth-delay product, in parts). So the window starts at `[upload] concurrency` and works in
rounds: a round lasts until as many parts as the width (at least `settle`) are acknowledged, and
its throughput (bytes acknowledged over its time) is set against the round before.

- Why it grows: the first round probes twice as wide, unless each part in it already moved
  faster than `unbound` (a LAN, or loopback: no round trip holds it back, and a wider round
  would only share the same link or CPU). While throughput grows with the width (by at least
  half of it, `burst`: each connection is window-limited, more of them is all it takes), twice
  as wide again, as TCP's slow start doubles.
- When it stops: a width whose round did not grow so gets a second round (one round's rate
  swings on a busy machine or a shared link), and if the better of the two did not either,
  the link is full. The
  round before it shows what one part moves on this path when the link is not the limit, so
  the width the link needs is this round's throughput over that per-part rate (plus `gain` of
  headroom for the gaps between a slot's parts): the path's own width, between the two
  rounds' widths. It holds there, and that width is the path's ceiling from then on. A probe
  that did not grow at all finds the narrower width again.
- How it shrinks: a part that failed or timed out halves it (never below one; once for the
  parts that were in flight together), and growth starts again: where the path's width was
  learned, doubling back to it round by round without judging (as TCP's slow start runs up to
  its ssthresh: a round cut short by resets is no measure of the path, and judging it would
  ratchet the width down reset after reset), else by the rule above. Either way a slow or
  lossy station goes back to the few parts its link holds, not to dozens.

It never passes `cap` (`[upload] max_parts_in_flight`, and the file's own parts). The next file
on the same path starts at the width this one found (`start_width`) and holds there, instead of
four or five doublings up from `concurrency`: its first round only checks that the path is as
it was (`found`: each round at half of it cost a part's time, 4.8 s at 150 ms, at half the
link's rate). A file
that ended while the window was still growing found no width, but the widest round that paid
(`proven`: twice as wide brought about twice as much) shows the path holds at least that many.
On a long fat path a part takes seconds and the window doubles once per part's time, so a first
file is often over before it finds the width (1 GiB at 1 Gbit/s and 150 ms: 8, 16, 32, 64 and
the file is sent); without this every file would start that climb again. The next file starts
half as wide again, a probe past that width, and judges its first round against the remembered
one (`held`, with what each part moved in it): neither back at `concurrency` nor one more round,
a part's time, at the width already shown. (Starting at the width itself, a file of 128 parts at
150 ms spent half of itself at 64; at twice it, 128 parts at once on a link that 72 fill, flows
starved each other and the file took longer than at 80.) A file that ends while a round is in
doubt settles on it (`conclude`): its next file starts at that width. Either width is kept
with what one part moved when it was learned (`part_rate`): a file started from it whose first
round moves under half of that per part finds the path slower or shared since, and holds at
the width its throughput needs at the remembered per-part rate, never doubling past a full
link; a station whose fast path turned slow is back to a few parts after one round.

Pure rule plus a slot counter: time is passed in (`now`), so the rule is tested with a fake
clock; `acquire`/`release` are what the part threads call around each attempt.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


def start_width(concurrency: int, path_width: int | None, at_least: bool = False) -> int:
    """Where a file's window starts: `concurrency`, or the width the last file found to fill
    the path if that is more (its first round checks the path is as it was, `found`); or, where
    the last file only showed the path holds `at_least` that width, half as many again: a probe
    past it (the round at that width is remembered, `held`, and this one judged against it)."""
    width = path_width or 0
    return max(concurrency, width + width // 2 if at_least else width)


@dataclass
class FlightWindow:
    start: int
    cap: int
    settle: int = 2
    gain: float = 0.08
    # Twice as wide while it brings at least 1 + burst times as much: each connection
    # window-limited. Not all of 2x: where a relay, a proxy or a loaded CPU takes its share,
    # connections slow a little as they multiply before the link is full, and stopping at the
    # first doubling short of 2x held the window well below the path's width.
    burst: float = 0.5
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
    # The width that filled the link, once a round found it full: growth stops there.
    path_width: int | None = field(default=None, init=False)
    # What one part moved on this path when the link did not hold it back, remembered with the
    # width a file starts from (bytes/s; None: nothing remembered). A first round whose parts
    # move under half of it finds the path changed (`_judge`).
    part_rate: float | None = None
    # The widest round whose throughput grew in proportion to its width: the path holds at
    # least this many parts in flight (0: none shown yet).
    proven: int = field(default=0, init=False)
    # Where the last file showed the path holds this many (its `proven`, each part moving
    # `part_rate`), that round is this file's round before: the first, wider, is judged
    # against it as the probe it is, instead of probing twice as wide again.
    held: int = 0
    # Where the last file found the path full at this many (each part moving `part_rate` where
    # the link did not hold it back), this file starts there and holds: its first round only
    # checks that the path is as it was (`_check_found`).
    found: int = 0
    # What one part moved when `path_width` or `proven` was learned: kept with it.
    learned_part_rate: float | None = field(default=None, init=False)
    # The rate of a round that did not keep up with its doubling, while a second round at the
    # same width is measured (None: no doubt pending).
    _doubted: float | None = field(default=None, init=False)
    # The round before is the remembered one (`held`), not one this file measured.
    _seeded: bool = field(default=False, init=False)
    # The first round at a `found` width is yet to show the path is as it was.
    _checking: bool = field(default=False, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        self.cap = max(1, self.cap)
        self.limit = max(1, min(self.start, self.cap))
        if self.held and self.part_rate and self.limit > self.held:
            self._last_limit, self._last_rate = self.held, self.held * self.part_rate
            self.proven, self.learned_part_rate = self.held, self.part_rate
            self._seeded = True
        elif self.found and self.part_rate and self.limit == self.found:
            self.path_width, self.learned_part_rate = self.found, self.part_rate
            self._growing, self._checking = False, True

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
            # One slot freed, one waiter woken: a wide window has a hundred threads waiting.
            self._cond.notify()

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
        if self._checking:
            self._checking = False
            self._check_found(rate)
            self._cond.notify_all()
            return
        width, last, before = self.limit, self._last_rate, self._last_limit
        # This file's first round (or the first since a failure): nothing it measured before.
        first = not last or self._seeded
        seen = min(width, self.held) if self._seeded else width  # parts it was learned at
        self._seeded = False
        if self._growing and first and rate / width >= self.unbound:
            self._growing = False  # each part already runs free: nothing to gain from width
            self.path_width = width
            self.learned_part_rate = rate / width
        if self._growing and first and self.part_rate and rate < self.part_rate * seen / 2:
            # Started from a remembered width, and it carries under half of what as many parts
            # did when that width was learned: the link is full already (slower, or shared,
            # since). It needs what it carries over what one part moved then, as when found
            # full. (Twice as wide as a width it held, each part moving under half is no news
            # on a link that was nearly full: the remembered round's throughput is the mark.)
            needed = math.ceil(rate / self.part_rate * (1 + self.gain))
            self.limit = self.path_width = max(1, min(width, needed))
            self.learned_part_rate = self.part_rate
            self._growing = False
        elif self._growing and self.path_width and width < self.path_width:
            # Back from a failure on a path whose width is known: twice as wide again, up to
            # it, without judging (a round cut short by a reset is no measure of the path).
            self.limit = min(self.ceiling, width * 2)
            self._growing = self.limit < self.ceiling
        elif self._growing:
            if self._doubted is not None:
                # The second round at a width whose first did not keep up: the better of the
                # two is its measure (a loaded CPU or a shared link slows a round, not speeds it).
                rate = max(rate, self._doubted)
            grew = rate / last if last else 0.0
            widened = width / before if before else 1.0
            in_proportion = widened > 1 and grew >= 1 + self.burst * (widened - 1)
            if last and not in_proportion and self._doubted is None:
                # One round is a noisy measure (its rate swings run to run on a busy machine):
                # before the link is judged full, the same width gets a second round.
                self._doubted = rate
                self._cond.notify_all()
                return
            self._doubted = None
            if last and in_proportion and width > self.proven:
                self.proven, self.learned_part_rate = width, rate / width
            if not last or in_proportion:
                # The first probe, or throughput in proportion: twice as wide.
                self.limit = min(self.ceiling, width * 2)
            else:
                self._settle(rate)
        self._last_rate, self._last_limit = rate, width
        self._cond.notify_all()

    def conclude(self) -> None:
        """The file is sent: a round in doubt (it did not keep up with its widening, and its
        second round never came) is the measure there is, so the width settles on it, no
        narrower than the round before it, for the next file to start from."""
        with self._cond:
            if self._doubted is not None and self._growing and self._last_rate:
                self._settle(self._doubted)

    def _check_found(self, rate: float) -> None:
        """The first round at the width the last file found full, which carried `rate`: the
        path as it was holds there; a path that carries under half of what it did then is
        slower or shared since (as many as its throughput needs at the remembered per-part
        rate); one whose parts each moved as fast as when the link did not hold them back has
        room (twice as wide, and judged from there as any file's growth is); parts that run
        free need fewer (the next file starts at half, and so down to `concurrency`)."""
        width, part_rate = self.limit, self.part_rate or 0.0
        if rate / width >= self.unbound:
            self.path_width = max(1, width // 2)
        elif rate < part_rate * width / 2:
            needed = math.ceil(rate / part_rate * (1 + self.gain))
            self.limit = self.path_width = max(1, min(width, needed))
        elif rate / width >= part_rate:
            self.path_width, self._growing = None, True
            self._last_rate, self._last_limit = rate, width
            self.limit = min(self.cap, width * 2)

    def _settle(self, rate: float) -> None:
        """The link is full at this width, which carried `rate`. At the narrower width each part
        moved last / before: rate / (last / before) parts fill it, and `gain` more for the gaps
        between a slot's parts, unless the narrower width filled it."""
        width, last, before = self.limit, self._last_rate, self._last_limit
        grew = rate / last
        full = grew < 1 + self.gain
        needed = before if full else int(before * grew * (1 + self.gain))
        self.limit = self.path_width = max(1, min(width, max(before, needed)))
        self.learned_part_rate = last / before
        self._growing = False
        self._doubted = None

    @property
    def ceiling(self) -> int:
        """How wide growth may go: the path's width once learned, else the cap."""
        return min(self.cap, self.path_width or self.cap)

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
            # A doubted width's second round cut short decides nothing: a round slowed by
            # resets is no measure of the path (settling on it ratchets the width down).
            self._doubted = None
            self._seeded = self._checking = False
            self.limit = max(1, self.limit // 2)
            self._growing = True
            self._last_rate, self._last_limit = 0.0, 0
            self._epoch += 1
            self._round_bytes, self._round_parts, self._round_started = 0, 0, None
