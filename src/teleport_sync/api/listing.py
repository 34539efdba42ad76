"""Finding captures in the account's listing, at a cost that follows what is looked for.

The API has no single-capture read: the listing (`GET /captures`, pages of at most 100) is the
only way to see a capture, and an account's listing grows for ever (every station's and every
person's captures). So a walk stops as soon as every capture looked for is found.

A live listing is newest-first. That is not documented, so it is used for speed, never for
correctness: a walk checks the order as it goes (each entry no newer than the one before), and
only while the order held may it stop at the *floor*: the entries have become older than any
capture looked for could be. A capture's floor is its `created` as the server reported it, once
a walk has seen it; before that, the station's own time of the create intent less a clock-skew
margin (a server's clock, or a time zone mix-up, may put `created` hours off ours).

A capture not found above its floor is probably gone (deleted in the web UI, by a person, or by
another tool). To be sure, the walk goes on to the end of the listing: a *full walk*, which a
caller that may wait (the poller) gets at most once per `full_walk_seconds`; a caller whose next
step would be wrong on a mistaken "absent" (`sure=True`) always gets one when the order did not
hold. The result says which it was, so the operator can be told.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..models import CaptureOutput
from ..retry import Clock

# One listing page: (limit, offset) -> the captures on it.
PageReader = Callable[[int, int], list[CaptureOutput]]
# When a capture was at the earliest created, as the station knows it (its create intent), or
# None when it does not know.
CreatedHint = Callable[[str], datetime | None]

FULL_WALK_SECONDS = 3600.0
# Covers a server clock hours off and a listing that reports local time as UTC (up to ±14 h).
CLOCK_SKEW_SECONDS = 86_400.0
PAGE_SIZE = 100
# Captures whose `created` is remembered (a station follows far fewer at once).
REMEMBERED = 10_000


@dataclass
class Walk:
    """What one walk of the listing found, and how far it went."""

    found: dict[str, CaptureOutput] = field(default_factory=dict)
    pages: int = 0
    entries: int = 0
    # Reached the end of the listing: anything not found is not in the account.
    complete: bool = False
    # Every entry seen was no newer than the one before it (newest-first held so far).
    ordered: bool = True
    # Stopped at the floor with the order holding: what was not found is very probably gone.
    floor_reached: bool = False

    def absent(self, eid: str) -> bool:
        """Not found, and the walk is good evidence that it is not in the account."""
        return eid not in self.found and (self.complete or self.floor_reached)


class Listing:
    """Walks of one account's listing, shared by every caller of one client (poller, webhook
    checks, completion, actions, downloads, adoption): one full-walk budget, one memory of the
    `created` times of captures looked for, and counts for the metrics."""

    def __init__(
        self,
        read_page: PageReader,
        clock: Clock,
        *,
        full_walk_seconds: float = FULL_WALK_SECONDS,
        clock_skew_seconds: float = CLOCK_SKEW_SECONDS,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._read_page = read_page
        self._clock = clock
        self.full_walk_seconds = full_walk_seconds
        self.clock_skew = timedelta(seconds=clock_skew_seconds)
        self.page_size = page_size
        # Set by the composition root (the journal knows when each capture was meant).
        self.hint: CreatedHint | None = None
        self._lock = threading.Lock()
        self._created: dict[str, datetime] = {}  # eids looked for -> server's `created`
        self._last_full_walk: float | None = None  # monotonic
        self.requests = 0
        self.full_walks = 0

    def reconfigure(self, full_walk_seconds: float, clock_skew_seconds: float) -> None:
        """New `[poll]` values (a config reload): the next search uses them."""
        with self._lock:
            self.full_walk_seconds = full_walk_seconds
            self.clock_skew = timedelta(seconds=clock_skew_seconds)

    # -- the budget -------------------------------------------------------------------------

    def full_walk_due(self) -> bool:
        """True when no full walk was made within `full_walk_seconds`."""
        with self._lock:
            last = self._last_full_walk
        return last is None or self._clock.monotonic() - last >= self.full_walk_seconds

    def _walked_fully(self) -> None:
        with self._lock:
            self._last_full_walk = self._clock.monotonic()
            self.full_walks += 1

    # -- floors -----------------------------------------------------------------------------

    def floor_of(self, eid: str) -> datetime | None:
        """The oldest `created` this capture could have: exact once seen, else the hint less
        the skew margin; None when nothing is known (no early stop for it)."""
        with self._lock:
            seen = self._created.get(eid)
        if seen is not None:
            return seen
        hinted = self.hint(eid) if self.hint is not None else None
        return hinted - self.clock_skew if hinted is not None else None

    def _floor(self, eids: Collection[str]) -> datetime | None:
        floors = [self.floor_of(eid) for eid in eids]
        if not floors or any(f is None for f in floors):
            return None
        return min(f for f in floors if f is not None)

    # -- walks ------------------------------------------------------------------------------

    def find(self, eids: Collection[str], *, sure: bool = False) -> Walk:
        """Walk until every capture in `eids` is found, or the floor, or the end.

        Past the floor with some not found, the walk goes on to the end when a full walk is due
        (or `sure` is asked and the order did not hold, or no floor is known and `sure`)."""
        wanted = {eid for eid in eids if eid}
        floor = self._floor(wanted)
        walk = Walk()
        if not wanted:
            return walk
        missing = set(wanted)
        full = self.full_walk_due()
        for page in self._pages(walk):
            for capture in page:
                if capture.eid in missing:
                    missing.discard(capture.eid)
                    walk.found[capture.eid] = capture
            if not missing:
                break
            if walk.complete:
                break
            if walk.ordered and floor is not None:
                if page[-1].created >= floor:
                    continue  # still above the floor: what is missing may be further down
                walk.floor_reached = True
                if full:
                    continue  # a full walk is due: go on to the end, to be sure
                break
            # The order did not hold, or nothing bounds the walk: only a full walk can tell.
            if not (full or sure):
                break
        self._remember(walk.found.values())
        if walk.complete:
            self._walked_fully()
        return walk

    def search(
        self, matches: Callable[[CaptureOutput], bool], *, since: datetime | None
    ) -> list[CaptureOutput]:
        """Every capture that `matches`, among those created after `since` less the skew
        margin (the orphan window: a capture made moments before a crash). The walk stops at
        that floor only while the listing's order held; otherwise, or with no `since`, it
        reads the whole listing: a missed capture here would be a duplicate."""
        floor = since - self.clock_skew if since is not None else None
        walk = Walk()
        found: list[CaptureOutput] = []
        for page in self._pages(walk):
            found.extend(c for c in page if matches(c))
            if walk.complete:
                break
            if walk.ordered and floor is not None and page[-1].created < floor:
                walk.floor_reached = True
                break
        if walk.complete:
            self._walked_fully()
        return found

    def every(self, page_size: int | None = None) -> Iterator[CaptureOutput]:
        """Every capture of the account, each once (`captures list`): a full walk."""
        walk = Walk()
        for page in self._pages(walk, page_size):
            yield from page
        if walk.complete:
            self._walked_fully()

    def _pages(self, walk: Walk, page_size: int | None = None) -> Iterator[list[CaptureOutput]]:
        """The listing page by page, each capture once, checking the order as it goes.

        A server may cap `limit` below what we ask for, so a page shorter than asked is not
        taken as the end: paging stops at an empty page, or at one shorter than the longest
        page seen (the server's real page size). Offsets shift when captures are created or
        deleted while paging: an entry may come twice (it is yielded once) and, with a
        deletion, one may be missed (hence `complete` means the end was reached, no more)."""
        offset = 0
        longest = 0
        seen: set[str] = set()
        newest_allowed: datetime | None = None
        while True:
            page = self._read_page(page_size or self.page_size, offset)
            with self._lock:
                self.requests += 1
            walk.pages += 1
            longest = max(longest, len(page))
            last = not page or len(page) < longest
            fresh = []
            for capture in page:
                if newest_allowed is not None and capture.created > newest_allowed:
                    walk.ordered = False
                newest_allowed = capture.created
                if capture.eid not in seen:
                    seen.add(capture.eid)
                    fresh.append(capture)
            walk.entries += len(fresh)
            if last:
                walk.complete = True
            if fresh or not last:
                yield fresh if fresh else page
            if last:
                return
            offset += len(page)

    def _remember(self, captures: Iterable[CaptureOutput]) -> None:
        with self._lock:
            for capture in captures:
                self._created.pop(capture.eid, None)  # re-inserted as the newest
                self._created[capture.eid] = capture.created
            # Only captures looked for are remembered; the oldest go first past the limit.
            while len(self._created) > REMEMBERED:
                del self._created[next(iter(self._created))]
