"""Capture states: the server's view of an uploaded capture, and its history."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..logging import storable_url
from ..models import CaptureOutput, is_failed, is_terminal
from .base import BaseJournal, recorded, utc_now
from .records import FileRecord
from .states import (
    FAILED_STATES,
    REFUSED,
    SEEN,
    STALE,
    Source,
    UploadState,
    Verdict,
    judge_capture_state,
    malformed_state,
)


def history_entry(row: Any) -> dict[str, Any]:
    """A `state_history` row as `status --json` shows it."""
    return {
        "state": row["state"],
        "observed_at": row["observed_at"],
        "source": row["source"],
        "applied": bool(row["applied"]),
        "note": row["note"],
    }


def seen_in(
    conn: sqlite3.Connection,
    file_id: int,
    eid: str | None,
    state: str,
    source: Source,
    note: str | None,
) -> None:
    """A heard state that moved nothing, kept in the history with why. Once per (state,
    source, why): a delivery replayed for ever adds one line."""
    if malformed_state(state) is not None:
        return  # not a state: never stored, not even as heard
    known = conn.execute(
        "SELECT 1 FROM state_history WHERE file_id = ? AND eid IS ? AND state = ? "
        "AND source IS ? AND applied = 0 AND note IS ?",
        (file_id, eid, state, source, note),
    ).fetchone()
    if known is None:
        conn.execute(
            "INSERT INTO state_history (file_id, eid, state, observed_at, source, applied, note) "
            "VALUES (?, ?, ?, ?, ?, 0, ?)",
            (file_id, eid, state, utc_now(), source, note),
        )


def observe_in(
    conn: sqlite3.Connection,
    file_id: int,
    state: str,
    source: Source,
    sid: str | None = None,
    error: str | None = None,
    viewer_url: str | None = None,
    eid: str | None = None,
) -> Verdict:
    """`CapturesMixin.observe_capture` inside the caller's transaction (completion uses it
    in the same transaction that marks the file uploaded). With `eid`, only while the row
    still has that capture (a report read before its file started over is `stale`)."""
    row = conn.execute(
        "SELECT upload_state, capture_state, eid FROM files WHERE id = ?", (file_id,)
    ).fetchone()
    if eid is not None and row["eid"] != eid:
        return Verdict(STALE, f"about capture {eid}; the file started over with another")
    verdict = judge_capture_state(row["upload_state"], row["capture_state"], state, source)
    now = utc_now()
    if verdict.outcome == REFUSED:
        return verdict  # not a state: nothing of it is stored
    if verdict.outcome == SEEN:
        seen_in(conn, file_id, row["eid"], state, source, verdict.note)
        return verdict
    if verdict.applied:
        conn.execute(
            "INSERT INTO state_history (file_id, eid, state, observed_at, source, applied) "
            "VALUES (?, ?, ?, ?, ?, 1)",
            (file_id, row["eid"], state, now, source),
        )
        conn.execute(
            "UPDATE files SET capture_state = ?, updated_at = ? WHERE id = ?",
            (state, now, file_id),
        )
        if state.upper() in FAILED_STATES:
            conn.execute(
                "UPDATE files SET error = ? WHERE id = ?",
                (recorded(error or "no reason given"), file_id),
            )
    # What the API said alongside a state the row holds (now, or already): its share id and
    # viewer link. Never from a webhook's body: callers pass only what the API answered.
    if sid is not None:
        conn.execute("UPDATE files SET sid = ? WHERE id = ?", (sid, file_id))
    if viewer_url is not None:
        conn.execute("UPDATE files SET viewer_url = ? WHERE id = ?", (viewer_url, file_id))
    return verdict


class CapturesMixin(BaseJournal):
    """Capture states as heard (poll, webhook, the user), and who still awaits one."""

    def observe_capture(
        self,
        file_id: int,
        state: str,
        *,
        source: Source,
        sid: str | None = None,
        error: str | None = None,
        viewer_url: str | None = None,
        eid: str | None = None,
    ) -> Verdict:
        """A capture state heard from `source`, moved (or not) by `states.judge_capture_state`.

        Applied: the history gains the state and the row takes it, with what came with it from
        the API (`sid`, the failure's `error`, `viewer_url`). Seen: the history keeps it with
        the note saying why it moved nothing; the row is left as it was. Duplicate: nothing.
        With `eid`: only while the row still has that capture (else `stale`, nothing)."""
        with self._transaction() as conn:
            return observe_in(conn, file_id, state, source, sid, error, viewer_url, eid)

    def observe_reported(self, file_id: int, capture: CaptureOutput, source: Source) -> Verdict:
        """What the API reported of a capture (a listing's entry), through `observe_capture`:
        its state, share id, viewer link once it ended (never a signed query), and for a
        failure the server's reason."""
        return self.observe_capture(
            file_id,
            capture.state,
            source=source,
            sid=capture.sid,
            error=capture.failure_reason if is_failed(capture.state) else None,
            viewer_url=storable_url(capture.viewer_url) if is_terminal(capture.state) else None,
            eid=capture.eid,  # a report counts only for the row that still has this capture
        )

    def note_state(self, file_id: int, eid: str, state: str, source: Source, note: str) -> None:
        """A state heard but not taken (a webhook the API did not confirm): history only,
        and only while the row still has capture `eid`."""
        with self._transaction() as conn:
            row = conn.execute("SELECT eid FROM files WHERE id = ?", (file_id,)).fetchone()
            if row["eid"] == eid:
                seen_in(conn, file_id, eid, state, source, note)

    def record_state(
        self, file_id: int, state: str, sid: str | None = None, *, source: str | None = None
    ) -> bool:
        """`observe_capture` for callers that only care whether the capture moved."""
        heard = Source(source) if source else Source.POLL
        return self.observe_capture(file_id, state, source=heard, sid=sid).applied

    def state_history(self, file_id: int, *, taken_only: bool = False) -> list[dict[str, Any]]:
        """Every state heard for the file, oldest first; `applied` false for those seen only
        (left out with `taken_only`: the states the capture really went through)."""
        taken = " AND applied = 1" if taken_only else ""
        rows = self._query(
            "SELECT state, observed_at, source, applied, note FROM state_history "
            f"WHERE file_id = ?{taken} ORDER BY id",
            (file_id,),
        )
        return [history_entry(r) for r in rows]

    def note_listed(self, file_id: int, *, listed: bool, confirmed: bool = False) -> None:
        """What the last search of the listing said of this row's capture: seen (`listed`), or
        not seen, and if not whether a full walk of the listing confirmed it. Writes only when
        that changes what `status` says (a poll that finds everything writes nothing)."""
        now = utc_now()
        with self._transaction() as conn:
            if listed:
                conn.execute(
                    "UPDATE files SET unlisted_since = NULL, unlisted_confirmed_at = NULL "
                    "WHERE id = ? AND unlisted_since IS NOT NULL",
                    (file_id,),
                )
                return
            conn.execute(
                "UPDATE files SET unlisted_since = ? WHERE id = ? AND unlisted_since IS NULL",
                (now, file_id),
            )
            if confirmed:
                conn.execute(
                    "UPDATE files SET unlisted_confirmed_at = ? WHERE id = ?", (now, file_id)
                )

    def intent_time(self, eid: str) -> str | None:
        """When this station first meant to create the capture `eid` (its create intent), or
        None for a capture it does not know: the floor of a search of the listing."""
        rows = self._query(
            "SELECT intent_at FROM files WHERE eid = ? ORDER BY id DESC LIMIT 1", (eid,)
        )
        return rows[0]["intent_at"] if rows else None

    def awaiting_result(self) -> list[FileRecord]:
        """Uploaded files whose capture is not terminal yet: what the poller follows."""
        rows = self._query(
            """SELECT * FROM files WHERE upload_state = ? AND eid IS NOT NULL
               AND (capture_state IS NULL
                    OR UPPER(capture_state) NOT IN ('READY', 'FAILED', 'ERROR', 'DELETED'))
               ORDER BY id""",
            (UploadState.UPLOADED,),
        )
        return self._records(rows)

    def terminal(self, *, unnotified: bool = False) -> list[FileRecord]:
        """Rows whose capture ended; with `unnotified`, only those whose notification (the
        last of its actions, `states.action_key`) is not journaled: what a start-up resumes,
        without reading a year of finished rows."""
        where = "UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR')"
        if unnotified:
            where += (
                " AND NOT (UPPER(capture_state) = 'READY' "
                "AND COALESCE(actions_done, '') LIKE '%\"notify\"%')"
                " AND NOT (UPPER(capture_state) IN ('FAILED', 'ERROR') "
                "AND COALESCE(actions_done, '') LIKE '%\"failed:notify\"%')"
            )
        return self._records(self._query(f"SELECT * FROM files WHERE {where} ORDER BY id"))

    def mark_capture_deleted(self, eid: str) -> list[str]:
        """`captures delete` removed this capture: say so in its rows; returns their paths."""
        rows = self._query("SELECT id, path, upload_state FROM files WHERE eid = ?", (eid,))
        for row in rows:
            if row["upload_state"] == UploadState.UPLOADED:
                self.observe_capture(row["id"], "DELETED", source=Source.USER)
            self.add_event(row["id"], "capture-deleted", f"capture {eid} deleted by the user")
        return [r["path"] for r in rows]

    # -- captures to delete from the account (queued by `_discard_unfinished_capture`) ------

    def discarded_captures(self) -> list[tuple[str, str]]:
        """(eid, why) of every unfinished capture still to be deleted, oldest first."""
        rows = self._query("SELECT eid, reason FROM discarded_captures ORDER BY queued_at")
        return [(r["eid"], r["reason"] or "") for r in rows]

    def discarded_capture_rows(self) -> list[dict[str, object]]:
        """The queue as `health --json` shows it: eid, reason, attempts, last_error."""
        rows = self._query(
            "SELECT eid, reason, attempts, last_error FROM discarded_captures ORDER BY queued_at"
        )
        return [dict(r) for r in rows]

    def capture_discarded(self, eid: str) -> None:
        """The capture is gone from the account (deleted now, or already)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM discarded_captures WHERE eid = ?", (eid,))

    def discard_failed(self, eid: str, why: str, error: str) -> None:
        """Deleting a capture nobody needs failed this time: keep it queued (or queue it: a
        duplicate swept after a timed-out create) for the next round."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO discarded_captures (eid, reason, queued_at, attempts, last_error) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT(eid) DO UPDATE SET "
                "attempts = attempts + 1, last_error = excluded.last_error",
                (eid, recorded(why), utc_now(), recorded(error)),
            )
