"""Follow captures until READY, FAILED or ERROR (any case): capture states -> the journal's history.

Calls the API only while some journaled capture is not terminal; otherwise it sleeps until
an upload finishes (`wake`). Unknown states are recorded like any other.

When: a capture is first asked about `first_seconds` (2 s) after its upload completed, then
after twice as long each time (with jitter), up to `[poll] interval_seconds`; one listing
answers for every capture followed, and listings are never closer than `first_seconds` (a
burst of 1,000 uploads is not 1,000 listings). A capture the emulator finishes in 3 s is seen
READY within seconds, one that takes an hour costs a listing per interval. Webhooks stay the
fast path; this is the reconciler.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable

from ..api import ApiError, AuthenticationError, TeleportClient
from ..api.authstate import AuthState
from ..journal import REFUSED, FileRecord, Journal, Source
from ..logging import get_logger
from ..models import is_failed, is_terminal

log = get_logger("teleport_sync.poller")

FIRST_POLL_SECONDS = 2.0


class PollSchedule:
    """When each followed capture is next due: soon after its upload, then less and less often.

    Pure, with the time passed in: `track` what is followed, ask `wait` how long until the next
    one is due, and say `polled` when a listing answered for them."""

    def __init__(
        self,
        interval: float,
        *,
        first: float = FIRST_POLL_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = interval
        self.first = min(first, interval)
        self._rng = rng or random.Random()
        self._due: dict[int, tuple[float, float]] = {}  # file id -> (due at, its last delay)
        self._last_listing = float("-inf")

    def track(self, file_ids: Iterable[int], now: float) -> None:
        """Follow these files (new ones are due `first` from now); forget the others."""
        wanted = set(file_ids)
        for gone in set(self._due) - wanted:
            del self._due[gone]
        for new in wanted - set(self._due):
            self._due[new] = (now + self.first, self.first)

    def wait(self, now: float) -> float | None:
        """Seconds until a listing is due (0: now), or None when nothing is followed."""
        if not self._due:
            return None
        earliest = min(due for due, _ in self._due.values())
        return max(0.0, earliest - now, self._last_listing + self.first - now)

    def polled(self, now: float) -> None:
        """A listing answered (or failed) for everything followed: each waits twice as long."""
        self._last_listing = now
        for file_id, (_, delay) in self._due.items():
            longer = min(self.interval, delay * 2)
            self._due[file_id] = (now + longer * self._rng.uniform(0.85, 1.15), longer)


class Poller:
    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        *,
        interval_seconds: float,
        on_terminal: Callable[[FileRecord], None],
        stop: threading.Event,
        auth: AuthState | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_poll_seconds: float = FIRST_POLL_SECONDS,
        tick_seconds: float | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.interval = interval_seconds
        self.on_terminal = on_terminal
        self.stop = stop
        self.wake = threading.Event()
        # Shared with the uploads: while authentication fails, polls wait for its backoff.
        self.auth = auth
        self.polls = 0
        self._clock = clock
        # Waits end at least this often (None: only at due times, on `wake` and on `stop`
        # through `wake`, as the daemon does it).
        self._tick = tick_seconds
        self.schedule = PollSchedule(interval_seconds, first=first_poll_seconds)
        self._missing_warned: set[str] = set()

    def poll_once(self) -> int:
        """One pass; returns how many captures are still not terminal."""
        active = self.journal.awaiting_result()
        if not active:
            return 0
        if self.auth is not None and self.auth.blocked_for() is not None:
            return len(active)
        self.polls += 1
        try:
            # Pages only until every followed capture is found (see api.listing): a poll of
            # recent captures costs a page or two, whatever the account holds.
            walk = self.client.find_captures(r.eid for r in active if r.eid)
        except AuthenticationError as exc:
            if self.auth is not None:
                self.auth.failed(str(exc))
            raise
        if self.auth is not None:
            self.auth.succeeded()
        remaining = 0
        for record in active:
            capture = walk.found.get(record.eid or "")
            if capture is None:
                self._not_listed(record, confirmed=walk.complete, probable=walk.absent)
                continue
            if record.unlisted_since is not None:
                self.journal.note_listed(record.id, listed=True)
                self._missing_warned.discard(record.eid or "")
            verdict = self.journal.observe_reported(record.id, capture, Source.POLL)
            if verdict.outcome == REFUSED:  # not a state: still followed, nothing stored
                log.warning("capture state refused", eid=record.eid, why=verdict.note)
                remaining += 1
                continue
            if verdict.applied:
                log.info("capture state", path=record.path, eid=record.eid, state=capture.state)
                if is_failed(capture.state):
                    log.warning(
                        "capture failed on the server",
                        path=record.path,
                        eid=record.eid,
                        reason=capture.error_reason_slug,
                        description=capture.state_description,
                    )
            if not is_terminal(capture.state):
                remaining += 1
            elif verdict.applied:  # an ending: the rows followed here are all still going
                try:
                    self.on_terminal(self.journal.get(record.id))
                except Exception:  # one capture's actions must not stop the others' states
                    log.exception("handling an ended capture failed", path=record.path)
        return remaining

    def _not_listed(
        self, record: FileRecord, *, confirmed: bool, probable: Callable[[str], bool]
    ) -> None:
        """A followed capture the listing did not show: journaled for `status`, and logged
        once per capture (and again once a full walk confirms it)."""
        self.journal.note_listed(record.id, listed=False, confirmed=confirmed)
        eid = record.eid or ""
        key = f"{eid}:confirmed" if confirmed else eid
        if key in self._missing_warned:
            return
        self._missing_warned.add(key)
        if confirmed:
            log.warning(
                "capture not in the account's listing (a full walk found no trace: deleted?)",
                path=record.path,
                eid=eid,
            )
        else:
            log.warning(
                "capture not seen in the account's listing; a full walk will confirm",
                path=record.path,
                eid=eid,
                probably_gone=probable(eid),
            )

    def run(self) -> None:
        while self.wait_and_poll() is not None:
            pass

    def wait_and_poll(self) -> int | None:
        """Wait until a followed capture is due (an upload finishing wakes it), then poll once:
        how many are still going, or None once `stop` is set. Nothing followed: no API call
        until an upload finishes."""
        while not self.stop.is_set():
            self.schedule.interval = self.interval  # a reload may have changed it
            self.schedule.track((r.id for r in self.journal.awaiting_result()), self._clock())
            wait = self.schedule.wait(self._clock())
            if wait is None or wait > 0:
                ticks = [w for w in (wait, self._tick) if w is not None]
                self.wake.wait(min(ticks) if ticks else None)
                self.wake.clear()
                continue
            try:
                return self.poll_once()
            except (AuthenticationError, ApiError) as exc:
                log.warning("polling capture states failed; will retry", error=str(exc))
            except Exception:  # keep following captures whatever happens
                log.exception("polling failed unexpectedly; will retry")
            finally:
                self.schedule.polled(self._clock())
            return 1
        return None
