"""The gate the uploader asks before each part, and admission before an upload starts: a paused
file or a closed upload window starts no part (parts in flight finish and stay acknowledged),
and an input's frames are counted and charged to the day's budget before its capture is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import BudgetSettings
from ..inputs import InputProblem, identify
from ..inputs.frames import FrameCount, count_frames
from ..journal import FileRecord, Journal, JournalError, UploadState
from ..limits import (
    BandwidthLimiter,
    Budget,
    DayUsage,
    Rate,
    budget_problem,
    describe_rate,
    estimated_cost,
    parse_bwlimit,
)
from ..logging import get_logger
from ..models import InputDataFormat
from ..retry import SystemClock
from .duplicates import duplicate_sentence, find_duplicate
from .holds import hold_reason, normalise, pause_reason, preflight_sentence

log = get_logger("teleport_sync.control")


def budget_from(settings: BudgetSettings) -> Budget:
    return Budget(
        max_frames_per_capture=settings.max_frames_per_capture,
        max_frames_per_day=settings.max_frames_per_day,
        max_captures_per_day=settings.max_captures_per_day,
        price_per_capture=settings.price_per_capture,
        price_per_frame=settings.price_per_frame,
        currency=settings.currency,
    )


def bandwidth_limiter(spec: str) -> BandwidthLimiter | None:
    """The shared limiter for `[upload] bwlimit` (or `upload --bwlimit`); None when "off"."""
    timetable = parse_bwlimit(spec)
    if timetable.constant and timetable.entries[0][1] is None:
        return None  # no limit ever: the sending path stays exactly as fast as without one

    def changed(rate: Rate) -> None:
        log.info("bandwidth limit", limit=describe_rate(rate), bwlimit=spec)

    return BandwidthLimiter(timetable, clock=SystemClock(), now=datetime.now, on_change=changed)


# Pre-flight, as admission asks it (`preflight.gate.PreflightGate` is the daemon's): judge the
# file's current version once (journaled) and return the reasons when it holds it, else None.
Preflight = Callable[[FileRecord], str | None]


def utc_day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


class Control:
    """The gate the uploader asks before each part, and admission before an upload starts."""

    def __init__(
        self,
        journal: Journal,
        *,
        budget: Budget | None = None,
        limiter: BandwidthLimiter | None = None,
        today: Callable[[], str] = utc_day,
        preflight: Preflight | None = None,
        duplicates: str = "hold",
    ) -> None:
        self.journal = journal
        # [upload] duplicates: "hold", "warn" or "allow" (`duplicates.find_duplicate`).
        self.duplicates = duplicates
        self._admitting = threading.Lock()
        self.preflight = preflight
        self.budget = budget or Budget()
        self.limiter = limiter
        self.today = today

    def reconfigure(self, budget: Budget, bwlimit: str) -> BandwidthLimiter | None:
        """A reloaded config: the new budget, and the limiter following the new `bwlimit`
        (the same limiter, re-scheduled, so parts in flight keep sharing it)."""
        self.budget = budget
        if self.limiter is None:
            self.limiter = bandwidth_limiter(bwlimit)
        else:
            self.limiter.set_timetable(parse_bwlimit(bwlimit))
        return self.limiter

    def state(self) -> tuple[int, bool]:
        """(the journal's control generation, is the upload window open)."""
        window_open = self.limiter is None or self.limiter.window_open
        return self.journal.control_generation(), window_open

    def start_watching(
        self, stop: threading.Event, on_change: Callable[[], None], interval: float = 1.0
    ) -> threading.Thread:
        """A thread that calls `on_change` within `interval` of a `pause`, `resume` or
        `approve` (from any process) or of the upload window opening, until `stop` is set."""
        seen = self.state()  # read now: nothing after this call is missed

        def watch() -> None:
            nonlocal seen
            while not stop.wait(interval):
                try:
                    now = self.state()
                    if now != seen and now[1]:
                        on_change()
                    seen = now
                except JournalError as exc:
                    log.error("journal unavailable; will keep trying", error=str(exc))

        thread = threading.Thread(target=watch, name="control", daemon=True)
        thread.start()
        return thread

    def gate(self, path: Path) -> str | None:
        """None if a new part of `path` may start now, else the sentence why not."""
        reason = pause_reason(self.journal, normalise(path))
        if reason is None and self.limiter is not None:
            reason = self.limiter.closed_reason()
        return reason

    def admit(self, record: FileRecord, *, force: bool = False) -> str | None:
        """Before an upload (re)starts: None if it may go, else why it waits (paused, held).

        Runs pre-flight (once per version, when one is wired in), counts the input's frames
        once per version (kept in the journal for `status`) and charges new captures to today's
        budget, or holds them with the reason.
        """
        reason = pause_reason(self.journal, record.path)
        if reason is not None:
            return reason
        if record.upload_state == UploadState.UPLOADED and not force:
            return None
        try:
            current = identify(Path(record.path))
        except InputProblem:
            return None  # the uploader says what is wrong with it
        if current != record.identity:
            # Changed since journaled: the uploader starts it over as a new capture.
            record = replace(record, identity=current, eid=None)
        if self.preflight is not None and record.eid is None:
            # Before its capture exists (a capture made is charged and never held), and before
            # the budget: a capture pre-flight holds costs no budget until it is approved.
            held_by_preflight = self.preflight(record)
            if held_by_preflight is not None:
                return preflight_sentence(held_by_preflight, record.path)
        with self._admitting:  # two copies admitted at once: the second sees the first
            facts = self._facts(record)
            duplicate = record.eid is None and self._duplicate_holds(record, facts)
        if facts["held_reason"] and not facts["approved_at"]:
            return hold_reason(self.journal, record.id, record.path)
        if duplicate:
            return hold_reason(self.journal, record.id, record.path)
        frames = facts["frames"]

        def check(frames_today: int, captures_today: int) -> str | None:
            if record.eid is not None:
                return None  # its capture exists already: it is charged, never held
            return budget_problem(self.budget, frames, DayUsage(frames_today, captures_today))

        held = self.journal.admit_within_budget(record.id, self.today(), frames or 0, check)
        if held is not None:
            log.warning("held by a budget", path=record.path, reason=held)
            return hold_reason(self.journal, record.id, record.path)
        return None

    def _duplicate_holds(self, record: FileRecord, facts: dict[str, Any]) -> bool:
        """Is this version the same bytes as a file already uploaded, held for `approve`?
        Looked for once per version ([upload] duplicates; "warn" is journaled as let go)."""
        if self.duplicates == "allow" or facts["duplicate_approved_at"]:
            return False
        if facts["duplicate_reason"]:
            return True
        earlier = find_duplicate(self.journal, record)
        if earlier is None:
            return False
        sentence = duplicate_sentence(earlier)
        hold = self.duplicates == "hold"
        self.journal.mark_duplicate(record.id, sentence, hold=hold)
        log.warning(
            "held: the same bytes as a file already uploaded"
            if hold
            else 'uploading the same bytes again ([upload] duplicates = "warn")',
            path=record.path,
            earlier=earlier.path,
            eid=earlier.eid,
        )
        return hold

    def _facts(self, record: FileRecord) -> dict[str, Any]:
        facts = self.journal.control_facts(record.id)
        if facts["control_fingerprint"] == record.identity.fingerprint:
            return facts
        counted = self._count(record)
        cost = estimated_cost(self.budget, counted.frames)
        self.journal.set_input_facts(
            record.id, record.identity.fingerprint, counted.frames, counted.duration_seconds, cost
        )
        return self.journal.control_facts(record.id)

    @staticmethod
    def _count(record: FileRecord) -> FrameCount:
        try:
            return count_frames(Path(record.path), InputDataFormat(record.input_data_format))
        except (OSError, ValueError) as exc:
            # Not knowing the frames is no reason to refuse: the upload itself will say more.
            log.info("frames not counted", path=record.path, error=str(exc))
            return FrameCount(None)
