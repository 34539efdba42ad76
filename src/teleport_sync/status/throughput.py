"""How fast the uploads move now: bytes per second over a sliding window, fed as they move.

The engine reports each block put on the wire and takes back an attempt that failed (a negative
count), so what is summed is the uploads' progress: acknowledged parts and the parts in flight,
never a retransmission twice. Counted when the bytes move, not when a page asks, so the first
look at the console during an upload shows its rate, and a look after it ended shows idle.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 5.0
# Counts this close together share one slot (a 1 GiB/s upload reports ~1000 blocks a second).
SLOT_SECONDS = 0.25
# A rate is never taken over less than this (the first block alone is no rate).
SHORTEST_SPAN_SECONDS = 1.0


class SlidingRate:
    """Bytes per second over the last `window` seconds (or since the uploads started moving,
    when that is more recent). Thread-safe: every upload worker adds to it."""

    def __init__(
        self, window: float = WINDOW_SECONDS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._slots: deque[list[float]] = deque()  # [slot start, bytes]
        self._moving_since = 0.0
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        now = self._clock()
        with self._lock:
            self._expire(now)
            if not self._slots:
                self._moving_since = now
            if self._slots and now - self._slots[-1][0] < SLOT_SECONDS:
                self._slots[-1][1] += nbytes
            else:
                self._slots.append([now, float(nbytes)])

    def per_second(self) -> float:
        now = self._clock()
        with self._lock:
            self._expire(now)
            if not self._slots:
                return 0.0
            total = sum(amount for _, amount in self._slots)
            span = max(SHORTEST_SPAN_SECONDS, min(self.window, now - self._moving_since))
        return max(0.0, total / span)

    def _expire(self, now: float) -> None:
        while self._slots and now - self._slots[0][0] > self.window:
            self._slots.popleft()
