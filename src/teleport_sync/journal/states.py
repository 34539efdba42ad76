"""A file's states, and the only moves between them the journal will make (DESIGN §3a).

Two machines, one owner: a file's upload state (`UploadState`, `MOVES`: below) and its
capture's state as the server reports it (`judge_capture_state`, further down). Every path that
moves either (the upload steps, the poller, webhooks, `captures delete`) goes through the
journal, which asks this module inside the transaction that makes the move.

The journal's `FilesMixin` owns every transition: it checks each move against `MOVES` inside the
transaction that makes it, so no caller can put a row into a state it cannot leave correctly
(an `uploaded` row sent back to `pending` by a stray call would upload the file twice).

    (new) ──register──▶ pending ──intent / capture──▶ uploading ──parts all up──▶ waiting
                           │  ▲                         │  ▲                           │
                           │  └─────── restart ─────────┤  │ next attempt   /uploaded  ▼
                           ▼                            ▼  │                        uploaded
                        rejected ◀───── input unusable ── failed ◀── network, server, auth

`waiting`: every part is acknowledged and completion (`POST /uploaded`, the paid step) waits for
the pose check's verdict (DESIGN §3a); when that verdict holds, the row stays `waiting` until
`approve` (then `uploaded`), or the file changes or is forgotten (then `restart` discards the
capture). Without a pose check the row passes through it at once.

`restart` (the file changed, or its capture vanished before completion) moves any row back to
`pending`. `rejected` is left only by a restart: the input itself has to change first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ..logging import printable
from ..models import FileIdentity


class UploadState(StrEnum):
    """Where a file's upload stands. The values are the strings stored in `files.upload_state`
    and shown in `status --json`, so they never change."""

    PENDING = "pending"  # journaled; nothing sent yet
    UPLOADING = "uploading"  # intent journaled or capture created; parts going
    WAITING = "waiting"  # parts all acknowledged; completion waits for the pose verdict
    UPLOADED = "uploaded"  # the server acknowledged completion: the capture is processing
    FAILED = "failed"  # an attempt failed; the next one is scheduled (`next_attempt_at`)
    REJECTED = "rejected"  # the input cannot be uploaded as it is; waits for it to change


_ACTIVE = frozenset(
    {UploadState.PENDING, UploadState.UPLOADING, UploadState.WAITING, UploadState.FAILED}
)

# to-state -> the states a row may be in for that move. `restart` is the one move from anywhere.
MOVES: dict[UploadState, frozenset[UploadState]] = {
    UploadState.PENDING: frozenset(UploadState),
    UploadState.UPLOADING: _ACTIVE,
    UploadState.WAITING: _ACTIVE,
    UploadState.UPLOADED: _ACTIVE,
    UploadState.FAILED: _ACTIVE,
    UploadState.REJECTED: _ACTIVE | {UploadState.REJECTED},
}


class IllegalMove(RuntimeError):
    """A move `MOVES` does not allow: a bug in the caller, never the user's doing."""

    def __init__(self, file_id: int, current: UploadState, wanted: UploadState) -> None:
        super().__init__(f"file {file_id}: no move from {current} to {wanted}")
        self.file_id = file_id
        self.current = current
        self.wanted = wanted


def check_move(file_id: int, current: str, wanted: UploadState) -> None:
    """Raise `IllegalMove` unless a row in `current` may move to `wanted`."""
    state = UploadState(current)
    if state not in MOVES[wanted]:
        raise IllegalMove(file_id, state, wanted)


# -- a file's version: checked before every act on it --------------------------------------------

SAME_VERSION, NEW_VERSION, NO_FILE = "same", "new", "gone"


def judge_version(journaled: FileIdentity, on_disk: FileIdentity | None) -> str:
    """Is the file on disk still the version the row's capture was made of?

    The one rule for every step that acts on a file after its upload (attributing a model to
    it, moving it to `done_dir`/`failed_dir`, running a hook, deleting its capture), asked by
    `FilesMixin.confirm_version` in the transaction that would start the row over:

    | on disk                                          | verdict | what the journal does        |
    |--------------------------------------------------|---------|------------------------------|
    | the journaled identity (dev, inode, size,        | same    | nothing: the act goes on     |
    | mtime_ns, fingerprint)                           |         |                              |
    | anything else (rewritten in place, replaced by   | new     | the row starts over as a new |
    | a rename, truncated, a special file now)         |         | version; the uploaded        |
    |                                                  |         | capture is kept; the act and |
    |                                                  |         | every later one stop         |
    | nothing                                          | gone    | nothing: the act decides     |

    Identity, not the settle rule, is what counts: a replacement the watcher has not seen
    settle yet is already not the capture's bytes, and is never filed as done.
    """
    if on_disk is None:
        return NO_FILE
    return SAME_VERSION if on_disk == journaled else NEW_VERSION


# How a lost-journal hold's error begins. Intake's refusals always begin with the file's path,
# so they can never be mistaken for one.
LOST_JOURNAL_HOLD = "held: "

# Capture states that end the server's work (any letter case; ERROR is the webhooks' name).
READY_STATES = frozenset({"READY"})
FAILED_STATES = frozenset({"FAILED", "ERROR"})
# Recorded by `captures delete`: the capture no longer exists in the account.
DELETED_STATE = "DELETED"


def is_lost_journal_hold(upload_state: str, error: str | None) -> bool:
    """Is this row a file held because the journal is new to its folder?"""
    return upload_state == UploadState.REJECTED and (error or "").startswith(LOST_JOURNAL_HOLD)


# -- the capture's state, as the server reports it ---------------------------------------------


class Source(StrEnum):
    """How a capture state was heard. Stored in `state_history.source`, shown by `status`."""

    UPLOAD = "upload"  # the answer to this station's own `/uploaded` (or its reconciliation)
    POLL = "poll"  # the API's listing, asked by the poller
    WEBHOOK = "webhook"  # a signed delivery, checked against the API before it counts
    USER = "user"  # `captures delete`


APPLIED, DUPLICATE, SEEN, STALE, REFUSED = "applied", "duplicate", "seen", "stale", "refused"

# What a capture state looks like. The API's set is open (NOTES: record unknown states, never
# crash on one), so a well-formed unknown state is followed; text that is no state at all (NUL,
# newlines, escape sequences, spaces, 100 characters) is refused and never stored.
_STATE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def malformed_state(state: str) -> str | None:
    """Why `state` cannot be a capture state (shown escaped), or None when it can."""
    if _STATE_FORM.fullmatch(state):
        return None
    return (
        f"{printable(state[:60])!s} is not a capture state (letters, digits and _, at most 40); "
        "refused, not recorded"
    )


# Where a known state stands in a capture's life; a state never moves to a lower rank. Unknown
# states rank with PROCESSING: recorded and followed, never taken for an ending.
_RANKS = {"CREATED": 0, "UPLOADING": 1, "UPLOADED": 2, "PROCESSING": 3}
_TERMINAL_RANK = 4
NOT_UPLOADED_YET = "the upload has not completed here yet; the upload goes on"


@dataclass(frozen=True)
class Verdict:
    """What the journal does with a heard state: `applied` (the capture moved), `duplicate`
    (it is already there: nothing is written), `seen` (kept in the history with `note`
    saying why it moved nothing), `stale` (about a capture the row no longer has: its file
    started over meanwhile; nothing is written) or `refused` (not a state at all: `note` says
    why; nothing is written)."""

    outcome: str
    note: str | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == APPLIED


def _outcome(state: str | None) -> str | None:
    """READY, FAILED (also ERROR, the webhooks' name) or DELETED; None while not ended."""
    upper = (state or "").upper()
    if upper in READY_STATES:
        return "READY"
    if upper in FAILED_STATES:
        return "FAILED"
    return "DELETED" if upper == DELETED_STATE else None


def _rank(state: str) -> int:
    if _outcome(state) is not None:
        return _TERMINAL_RANK
    return _RANKS.get(state.upper(), _RANKS["PROCESSING"])


def judge_capture_state(
    upload_state: str, current: str | None, heard: str, source: Source
) -> Verdict:
    """May a capture whose file is in `upload_state`, last seen `current`, move to `heard`?

    The table (a move it lacks is `seen`: recorded in the history, changing nothing):

    | the row                         | heard                              | verdict   |
    |---------------------------------|------------------------------------|-----------|
    | not `uploaded` yet              | any state, from this upload        | applied   |
    | not `uploaded` yet              | any state, from a poll or webhook  | seen      |
    | any                             | the state it is in (any case)      | duplicate |
    | `uploaded`, not ended           | a later state, an unknown one,     | applied   |
    |                                 | READY, FAILED/ERROR                |           |
    | `uploaded`, not ended           | an earlier state                   | seen      |
    | READY                           | anything but a deletion            | seen      |
    | FAILED/ERROR                    | READY, from the API (poll, or a    | applied   |
    |                                 | webhook checked against the API)   |           |
    | FAILED/ERROR                    | anything else but a deletion       | seen      |
    | `uploaded`, any                 | DELETED, from the user             | applied   |
    | DELETED                         | anything                           | seen      |
    | any                             | text that is no state at all       | refused   |
    """
    malformed = malformed_state(heard)
    if malformed is not None:
        return Verdict(REFUSED, malformed)
    ended = _outcome(current)
    if current is not None and (
        current.upper() == heard.upper() or (ended is not None and ended == _outcome(heard))
    ):
        return Verdict(DUPLICATE)
    if upload_state != UploadState.UPLOADED:
        if source is Source.UPLOAD:
            return Verdict(APPLIED)
        return Verdict(SEEN, NOT_UPLOADED_YET)
    if ended == "DELETED":
        return Verdict(SEEN, "the capture was deleted from the account")
    if _outcome(heard) == "DELETED":
        if source is Source.USER:
            return Verdict(APPLIED)
        return Verdict(SEEN, "only `captures delete` records a deletion")
    if ended == "READY":
        return Verdict(SEEN, "READY is final: a later or replayed state never undoes it")
    if ended == "FAILED":
        if _outcome(heard) == "READY" and source in (Source.POLL, Source.WEBHOOK):
            return Verdict(APPLIED)
        return Verdict(SEEN, f"{current} is final unless the API itself says READY")
    if current is not None and _rank(heard) < _rank(current):
        return Verdict(SEEN, f"older than {current}: a state never moves back")
    return Verdict(APPLIED)


def action_key(capture_state: str | None, action: str) -> str:
    """The name an ended capture's action is journaled under in `files.actions_done`.

    Keyed by outcome: a capture that FAILED and that the API later reports READY still gets
    its READY actions (models, `done_dir`, `on_ready`, `ready`), each once. READY's keep the
    plain names (`download`, `move`, `hook`, `notify`); a failure's are `failed:<action>`.
    """
    return f"failed:{action}" if _outcome(capture_state) == "FAILED" else action
