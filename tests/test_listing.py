"""Searches of the account's listing (`api.listing`): they stop once what they look for is found,
stop at the floor only while the listing is newest-first, and walk it all at most once per
period. Over a listing made of plain values; the emulator's year-old account is in
tests/test_account_scale.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teleport_sync.api.listing import Listing
from teleport_sync.models import CaptureOutput

from .conftest import FakeClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def capture(eid: str, created: datetime) -> CaptureOutput:
    return CaptureOutput(eid=eid, name=eid, state="READY", created=created)


class Account:
    """A listing of `others` captures an hour apart, newest first, after `ours` (or in
    `order` when a test wants it broken); counts the pages asked for."""

    def __init__(self, others: int, ours: list[CaptureOutput] | None = None) -> None:
        older = [capture(f"o{i}", NOW - timedelta(hours=i + 1)) for i in range(others)]
        self.items = [*(ours or []), *older]
        self.pages = 0

    def read(self, limit: int, offset: int) -> list[CaptureOutput]:
        self.pages += 1
        return self.items[offset : offset + limit]


def listing(account: Account, clock: FakeClock, **kwargs: float) -> Listing:
    found = Listing(account.read, clock, clock_skew_seconds=600, **kwargs)
    found.hint = lambda eid: NOW - timedelta(minutes=5)  # our creates were minutes ago
    return found


def test_a_search_stops_at_the_page_where_the_last_capture_looked_for_is_found() -> None:
    ours = [capture(f"new{i}", NOW - timedelta(minutes=i)) for i in range(3)]
    account = Account(20_000, ours)
    walk = listing(account, FakeClock()).find({"new0", "new2"})
    assert set(walk.found) == {"new0", "new2"} and account.pages == 1
    assert not walk.complete


def test_a_missing_capture_costs_a_full_walk_at_most_once_per_period() -> None:
    account = Account(1_000, [capture("new0", NOW)])
    clock = FakeClock()
    search = listing(account, clock, full_walk_seconds=3600)

    first = search.find({"new0", "gone"})  # nothing walked fully yet: walk it all, once
    assert first.complete and first.absent("gone") and account.pages == 11
    assert search.full_walks == 1

    account.pages = 0
    clock.advance(600)
    again = search.find({"new0", "gone"})  # stops at the floor: an hour older than ours
    assert account.pages == 1 and not again.complete and again.floor_reached
    assert again.absent("gone") and again.found.keys() == {"new0"}

    clock.advance(3000)  # an hour since the full walk
    account.pages = 0
    assert search.find({"gone"}).complete and account.pages == 11
    assert search.full_walks == 2


def test_a_listing_that_is_not_newest_first_is_never_cut_short() -> None:
    account = Account(1_000)
    account.items.reverse()  # oldest first: the capture looked for is on the last page
    account.items.append(capture("new0", NOW))
    clock = FakeClock()
    search = listing(account, clock)
    search.find({"x"})  # spends the period's full walk
    account.pages = 0
    cheap = search.find({"new0"})  # the order broke on page 1: no floor, no full walk due
    assert cheap.found == {} and not cheap.ordered and not cheap.absent("new0")
    assert account.pages == 1
    sure = search.find({"new0"}, sure=True)  # a caller that must not be wrong walks on
    assert sure.found.keys() == {"new0"}


def test_the_floor_is_the_server_time_once_the_capture_was_seen() -> None:
    # The server's clock is two days behind ours: the hint alone would stop too soon.
    ours = capture("new0", NOW - timedelta(days=2))
    account = Account(500, [capture("n1", NOW - timedelta(days=1)), ours])
    account.items.sort(key=lambda c: c.created, reverse=True)
    clock = FakeClock()
    search = listing(account, clock)
    assert search.find({"new0"}).found.keys() == {"new0"}  # first time: a full walk finds it
    assert search.floor_of("new0") == ours.created


def test_the_orphan_search_stops_at_the_intent_only_while_the_order_holds() -> None:
    token = capture("tok", NOW - timedelta(minutes=1))
    account = Account(5_000, [token])
    search = listing(account, FakeClock())
    hits = search.search(lambda c: c.eid == "tok", since=NOW - timedelta(minutes=2))
    assert [c.eid for c in hits] == ["tok"] and account.pages == 1

    account.items.reverse()  # oldest first: the order breaks at once, so all of it is read
    account.pages = 0
    hits = search.search(lambda c: c.eid == "tok", since=NOW - timedelta(minutes=2))
    assert [c.eid for c in hits] == ["tok"] and account.pages == 51

    account.pages = 0
    assert search.search(lambda c: c.eid == "tok", since=None)  # no intent time: all of it
    assert account.pages == 51


def test_a_reload_shortens_the_full_walk_period_at_once() -> None:
    account = Account(300)
    clock = FakeClock()
    search = listing(account, clock, full_walk_seconds=3600)
    search.find({"gone"})
    assert search.full_walks == 1 and not search.full_walk_due()
    search.reconfigure(60, 600)  # `[poll] full_walk_seconds = 60`, SIGHUP
    clock.advance(61)
    assert search.full_walk_due()
    assert search.find({"gone"}).complete and search.full_walks == 2
