"""The notification outbox: one row per event and target, delivered at least once."""

from __future__ import annotations

import json
import sqlite3

from .base import BaseJournal, recorded, utc_now
from .records import FileRecord, OutboxRow
from .states import UploadState


class OutboxMixin(BaseJournal):
    """Queueing notifications, handing them out when due, and their outcome."""

    def needing_notification(self) -> list[FileRecord]:
        """Captures that ended and files rejected whose notification is not queued yet."""
        rows = self._query(
            """SELECT * FROM files WHERE (upload_state = ?
                   OR UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR'))
               AND NOT EXISTS (SELECT 1 FROM json_each(files.actions_done)
                               WHERE json_each.value = 'notify')
               ORDER BY id""",
            (UploadState.REJECTED,),
        )
        return [self._record(r) for r in rows]

    def enqueue_notification(
        self,
        file_id: int | None,
        event_id: str,
        kind: str,
        payload: str,
        targets: list[str],
        *,
        mark: str = "notify",
        eid: str | None = None,
    ) -> int:
        """Queue one event for each target, once per event id; with a file, mark it notified
        (`mark` in its actions; with `eid`, only while the row still has that capture).

        One transaction: a crash leaves either the queued rows and the mark, or neither."""
        now = utc_now()
        added = 0
        with self._transaction() as conn:
            if file_id is not None:
                self._still_has(conn, file_id, eid)
            for target in targets:
                cursor = conn.execute(
                    """INSERT INTO outbox (event_id, target, kind, payload, created_at,
                           attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)
                       ON CONFLICT(event_id, target) DO NOTHING""",
                    (event_id, target, kind, payload, now, now),
                )
                added += cursor.rowcount
            if file_id is not None:
                row = conn.execute(
                    "SELECT actions_done FROM files WHERE id = ?", (file_id,)
                ).fetchone()
                done = json.loads(row["actions_done"] or "[]") if row else []
                if row and mark not in done:
                    done.append(mark)
                    conn.execute(
                        "UPDATE files SET actions_done = ? WHERE id = ?",
                        (json.dumps(done), file_id),
                    )
        return added

    @staticmethod
    def _outbox_row(row: sqlite3.Row) -> OutboxRow:
        return OutboxRow(**{key: row[key] for key in row.keys()})  # noqa: SIM118

    def outbox(self) -> list[OutboxRow]:
        return [self._outbox_row(r) for r in self._query("SELECT * FROM outbox ORDER BY rowid")]

    def due_notifications(self, now: str, limit: int = 50) -> list[OutboxRow]:
        rows = self._query(
            """SELECT * FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL
               AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?""",
            (now, limit),
        )
        return [self._outbox_row(r) for r in rows]

    def pending_notifications(self) -> int:
        rows = self._query(
            "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"
        )
        return int(rows[0]["n"])

    def next_notification_at(self) -> str | None:
        rows = self._query(
            """SELECT MIN(next_attempt_at) AS at FROM outbox
               WHERE delivered_at IS NULL AND given_up_at IS NULL"""
        )
        return rows[0]["at"] if rows else None

    def notification_done(
        self, event_id: str, target: str, *, delivered: bool, error: str | None = None
    ) -> None:
        """Delivered, or given up on (with the last error)."""
        column = "delivered_at" if delivered else "given_up_at"
        with self._transaction() as conn:
            # `column` is one of two names chosen above, never input.
            conn.execute(
                f"UPDATE outbox SET {column} = ?, attempts = attempts + 1, last_error = ? "
                "WHERE event_id = ? AND target = ?",
                (utc_now(), recorded(error) if error else None, event_id, target),
            )

    def notification_retry(self, event_id: str, target: str, error: str, at: str) -> None:
        """One failed attempt; the target's other pending events wait until `at` as well."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE outbox SET attempts = attempts + 1, last_error = ?,
                       next_attempt_at = ? WHERE event_id = ? AND target = ?""",
                (recorded(error), at, event_id, target),
            )
            conn.execute(
                """UPDATE outbox SET next_attempt_at = ? WHERE target = ?
                   AND delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at < ?""",
                (at, target, at),
            )
