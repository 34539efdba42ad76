"""A file's upload state, and the only moves between states the journal will make.

The journal's `FilesMixin` owns every transition: it checks each move against `MOVES` inside the
transaction that makes it, so no caller can put a row into a state it cannot leave correctly
(an `uploaded` row sent back to `pending` by a stray call would upload the file twice).

    (new) ──register──▶ pending ──intent / capture──▶ uploading ──/uploaded──▶ uploaded
                           │  ▲                         │  ▲
                           │  └─────── restart ─────────┤  │ next attempt
                           ▼                            ▼  │
                        rejected ◀───── input unusable ── failed ◀── network, server, auth

`restart` (the file changed, or its capture vanished before completion) moves any row back to
`pending`. `rejected` is left only by a restart: the input itself has to change first.
"""

from __future__ import annotations

from enum import StrEnum


class UploadState(StrEnum):
    """Where a file's upload stands. The values are the strings stored in `files.upload_state`
    and shown in `status --json`, so they never change."""

    PENDING = "pending"  # journaled; nothing sent yet
    UPLOADING = "uploading"  # intent journaled or capture created; parts going
    UPLOADED = "uploaded"  # the server acknowledged completion: the capture is processing
    FAILED = "failed"  # an attempt failed; the next one is scheduled (`next_attempt_at`)
    REJECTED = "rejected"  # the input cannot be uploaded as it is; waits for it to change


_ACTIVE = frozenset({UploadState.PENDING, UploadState.UPLOADING, UploadState.FAILED})

# to-state -> the states a row may be in for that move. `restart` is the one move from anywhere.
MOVES: dict[UploadState, frozenset[UploadState]] = {
    UploadState.PENDING: frozenset(UploadState),
    UploadState.UPLOADING: _ACTIVE,
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
