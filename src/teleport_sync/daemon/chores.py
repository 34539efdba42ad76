"""When each of the main loop's chores is next due: one small schedule on a monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable


class Chores:
    """Chores by name, each due again `every` seconds after it last ran."""

    def __init__(
        self, first_in: dict[str, float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        now = clock()
        self._next = {chore: now + delay for chore, delay in first_in.items()}

    def due(self, chore: str, every: float) -> bool:
        """Is `chore` due now? If so, it is next due `every` seconds from now."""
        now = self._clock()
        if now < self._next[chore]:
            return False
        self._next[chore] = now + every
        return True
