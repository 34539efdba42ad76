"""Capture states: the server's view of an uploaded capture, and its history."""

from __future__ import annotations

from .base import BaseJournal, shown, utc_now
from .records import FileRecord
from .states import UploadState


class CapturesMixin(BaseJournal):
    """Capture states as heard (poll, webhook, the user), and who still awaits one."""

    def record_state(
        self, file_id: int, state: str, sid: str | None = None, *, source: str | None = None
    ) -> bool:
        """Append `state` to the history if it differs from the last one; keep `sid`.

        `source` says how it was heard (`poll`, `webhook`)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT capture_state, eid, sid FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            changed = row["capture_state"] != state
            now = utc_now()
            if changed:
                conn.execute(
                    "INSERT INTO state_history (file_id, eid, state, observed_at, source) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (file_id, row["eid"], state, now, source),
                )
                conn.execute(
                    "UPDATE files SET capture_state = ?, updated_at = ? WHERE id = ?",
                    (state, now, file_id),
                )
            if sid is not None and sid != row["sid"]:
                conn.execute("UPDATE files SET sid = ? WHERE id = ?", (sid, file_id))
        return changed

    def record_capture_error(self, file_id: int, reason: str) -> None:
        """Why the server failed the capture (its error reason slug), in the row's `error`."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE files SET error = ?, updated_at = ? WHERE id = ?",
                (shown(reason), utc_now(), file_id),
            )

    def state_history(self, file_id: int) -> list[dict[str, str | None]]:
        rows = self._query(
            "SELECT state, observed_at, source FROM state_history WHERE file_id = ? ORDER BY id",
            (file_id,),
        )
        return [
            {"state": r["state"], "observed_at": r["observed_at"], "source": r["source"]}
            for r in rows
        ]

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

    def terminal(self) -> list[FileRecord]:
        rows = self._query(
            "SELECT * FROM files WHERE UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR') "
            "ORDER BY id"
        )
        return self._records(rows)

    def mark_capture_deleted(self, eid: str) -> list[str]:
        """`captures delete` removed this capture: say so in its rows; returns their paths."""
        rows = self._query("SELECT id, path, upload_state FROM files WHERE eid = ?", (eid,))
        for row in rows:
            if row["upload_state"] == UploadState.UPLOADED:
                self.record_state(row["id"], "DELETED", source="user")
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
                (eid, shown(why), utc_now(), shown(error)),
            )
