"""Where a file is in its life (`phase`) and why (`reason`): derived, never stored.

Pure: the journal's facts about one file go in, `(phase, reason)` comes out. Every reader
(`status`, `health`, metrics, the systemd STATUS line, the web console) asks this one function, so
they can never disagree about what a row means.

Phases, in the order a file normally passes through them:
settling → incomplete → queued (held | paused) → uploading → completing → processing →
downloading → done; or failed / rejected.

`held` (a budget holds the file until `approve`) and `paused` (`pause` stops new parts) are
decided elsewhere; their reasons come in as `held` and `paused`. A file held because the journal
is new to its folder (lostjournal.py) is journaled as refused, with an error that starts with
LOST_JOURNAL_HOLD; it too is `held`, released by `approve` like a budget hold. The journal's
`states` module holds these words, as it owns the states they describe.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..journal.states import (
    DELETED_STATE,
    FAILED_STATES,
    LOST_JOURNAL_HOLD,
    READY_STATES,
    UploadState,
    is_lost_journal_hold,
)
from ..models import failure_sentence

PHASES = (
    "settling",
    "incomplete",
    "queued",
    "held",
    "paused",
    "uploading",
    "waiting",
    "completing",
    "processing",
    "downloading",
    "done",
    "failed",
    "rejected",
)

__all__ = [
    "DELETED_STATE",
    "FAILED_STATES",
    "LOST_JOURNAL_HOLD",
    "PHASES",
    "READY_STATES",
    "PhaseFacts",
    "derive",
    "is_lost_journal_hold",
]


@dataclass(frozen=True)
class PhaseFacts:
    """What the journal knows about one file (and, for a file being written, its sighting)."""

    upload_state: str = UploadState.PENDING
    capture_state: str | None = None
    error: str | None = None
    next_attempt_at: str | None = None
    parts_done: int = 0
    num_parts: int | None = None
    actions_done: tuple[str, ...] = ()
    result_error: str | None = None
    download_wanted: bool = True
    # A sighting: the file was noticed (again) and is not yet handed to the uploader.
    sighting: str | None = None  # "settling" | "incomplete"
    sighting_reason: str | None = None
    # Decided by budgets (`held`) and by `pause` (`paused`): the sentence saying why, or None.
    held: str | None = None
    paused: str | None = None
    # Why no upload can start now, whatever the file (authentication failing), or None.
    blocked: str | None = None
    # The account's listing has not shown the capture since then; a full walk confirmed it then.
    unlisted_since: str | None = None
    unlisted_confirmed_at: str | None = None


def derive(facts: PhaseFacts) -> tuple[str, str | None]:
    """The file's phase and the sentence saying why it is there (None when nothing to say)."""
    if facts.sighting in ("settling", "incomplete"):
        return facts.sighting, facts.sighting_reason
    state = facts.upload_state
    if state == UploadState.REJECTED:
        if is_lost_journal_hold(state, facts.error):
            return "held", facts.error
        return "rejected", facts.error or "the file cannot be uploaded as it is"
    if state == UploadState.FAILED:
        return "failed", _failed_upload_reason(facts)
    if state in (UploadState.PENDING, UploadState.UPLOADING):
        return _before_upload_done(facts)
    if state == UploadState.WAITING:
        return _waiting(facts)
    return _after_upload(facts)


def _failed_upload_reason(facts: PhaseFacts) -> str:
    why = facts.error or "the last upload attempt failed"
    if facts.blocked:
        return f"{why}; {facts.blocked}"
    if facts.next_attempt_at:
        return f"{why}; next attempt at {_short_time(facts.next_attempt_at)}"
    return f"{why}; tried again by the daemon or by rerunning upload"


def _before_upload_done(facts: PhaseFacts) -> tuple[str, str | None]:
    if facts.paused:
        return "paused", facts.paused
    if facts.upload_state == UploadState.PENDING:
        if facts.held:
            return "held", facts.held
        return "queued", facts.blocked or "waiting for an upload slot"
    if facts.num_parts and facts.parts_done >= facts.num_parts:
        return "completing", "all parts sent; telling the server the upload is complete"
    if facts.num_parts:
        return "uploading", f"{facts.parts_done} of {facts.num_parts} parts acknowledged"
    return "uploading", "creating the capture"


def _waiting(facts: PhaseFacts) -> tuple[str, str | None]:
    """Every part is up; completion (the paid step) waits for the pose check, or for approve
    when its verdict holds the capture."""
    if facts.held:
        held = facts.held.replace("held by pre-flight:", "held before completion by pre-flight:")
        return "held", f"{held} (all {facts.num_parts or 0} parts are uploaded)"
    if facts.paused:
        return "paused", facts.paused
    return "waiting", (
        "all parts are uploaded; completion (POST /uploaded, which starts the paid processing) "
        "waits for the pose check's verdict"
    )


def _after_upload(facts: PhaseFacts) -> tuple[str, str | None]:
    capture = (facts.capture_state or "").upper()
    if capture == DELETED_STATE:
        return "done", "the capture was deleted from the account"
    if capture in FAILED_STATES:
        if facts.error:  # the service's slug, with what an operator can do about it
            return "failed", failure_sentence(facts.error)
        return "failed", f"the capture is {facts.capture_state} on the server"
    if capture in READY_STATES:
        if facts.download_wanted and "download" not in facts.actions_done:
            if facts.result_error:
                return "downloading", f"the download failed and is retried: {facts.result_error}"
            return "downloading", "fetching the model files"
        return "done", None
    if facts.unlisted_since:
        return "processing", _unlisted_reason(facts)
    if capture:
        return "processing", f"the capture is {facts.capture_state} on the server"
    return "processing", "uploaded; waiting for the server's first state"


def _unlisted_reason(facts: PhaseFacts) -> str:
    since = _short_time(facts.unlisted_since or "")
    if facts.unlisted_confirmed_at:
        checked = _short_time(facts.unlisted_confirmed_at)
        return (
            f"the capture is not in the account's listing since {since} (a full walk at "
            f"{checked} found no trace: deleted?); still followed"
        )
    return (
        f"the capture is not seen in the account's listing since {since}; a full walk "
        "(at most once per [poll] full_walk_seconds) will confirm"
    )


def _short_time(iso: str) -> str:
    """`2026-11-28T01:02:03.456789+00:00` -> `2026-11-28 01:02:03 UTC` (for sentences)."""
    if len(iso) >= 19 and iso[10] == "T":
        return f"{iso[:10]} {iso[11:19]} UTC"
    return iso
