"""Operator control: pause and resume, budgets and holds, what an input holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from .base import BaseJournal, recorded, utc_now
from .preflight import PREFLIGHT_COLUMNS, PREFLIGHT_JOIN, PreflightMixin
from .records import FileRecord

# The facts key that pause, resume and approve bump, so a running daemon notices them.
CONTROL_GENERATION = "control-generation"


class ControlMixin(PreflightMixin, BaseJournal):
    """Pauses, the control generation a running daemon watches, input facts and budgets."""

    def paused_paths(self) -> list[str]:
        """Paths and folders paused by `pause` ("*" = everything)."""
        return [r["path"] for r in self._query("SELECT path FROM paused ORDER BY path")]

    def set_paused(self, paths: list[str], paused: bool) -> None:
        """Pause (or resume) `paths`; resuming "*" resumes everything. Bumps the generation."""
        now = utc_now()
        with self._transaction() as conn:
            if paused:
                conn.executemany(
                    "INSERT INTO paused (path, paused_at) VALUES (?, ?) "
                    "ON CONFLICT(path) DO NOTHING",
                    [(p, now) for p in paths],
                )
            elif "*" in paths:
                conn.execute("DELETE FROM paused")
            else:
                conn.executemany("DELETE FROM paused WHERE path = ?", [(p,) for p in paths])
            self._bump_control(conn)
            self._event(conn, None, "paused" if paused else "resumed", " ".join(paths))

    def control_generation(self) -> int:
        """Changes whenever pause, resume or approve does: a running daemon watches it."""
        return int(self.fact(CONTROL_GENERATION) or 0)

    def _bump_control(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO facts (key, value, learned_at) VALUES (?, '1', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
            "learned_at = excluded.learned_at",
            (CONTROL_GENERATION, utc_now()),
        )

    def control_facts(self, file_id: int) -> dict[str, Any]:
        """frames, duration_seconds, estimated_cost, held_reason, approved_at, budget_day and
        the fingerprint they belong to (all None until the input was looked at); the file's
        `fingerprint` and its pre-flight result (`preflight_*`, None until checked)."""
        rows = self._query(
            "SELECT f.frames, f.duration_seconds, f.estimated_cost, f.held_reason, "
            "f.approved_at, f.budget_day, f.control_fingerprint, f.fingerprint, "
            "f.duplicate_reason, f.duplicate_approved_at, f.path, "
            f"{PREFLIGHT_COLUMNS} FROM files f {PREFLIGHT_JOIN} WHERE f.id = ?",
            (file_id,),
        )
        if not rows:
            raise KeyError(file_id)
        return dict(rows[0])

    def set_input_facts(
        self,
        file_id: int,
        fingerprint: str,
        frames: int | None,
        duration_seconds: float | None,
        estimated_cost: float | None,
    ) -> None:
        """What a new version of the input holds; forgets the old version's hold and count."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET frames = ?, duration_seconds = ?, estimated_cost = ?,
                       held_reason = NULL, approved_at = NULL, budget_day = NULL,
                       duplicate_reason = NULL, duplicate_approved_at = NULL,
                       control_fingerprint = ? WHERE id = ?""",
                (frames, duration_seconds, estimated_cost, fingerprint, file_id),
            )

    def approve(self, file_id: int) -> None:
        """Release a held file: from its pre-flight hold (this version is not checked again),
        or, when pre-flight does not hold it, from its budget hold (it is uploaded whatever the
        budget says). A file held by pre-flight has not met its budget yet: that comes next."""
        now = utc_now()
        with self._transaction() as conn:
            if self._release_preflight_hold(conn, file_id, now):
                pass
            elif self._release_duplicate_hold(conn, file_id, now):
                self._event(conn, file_id, "approved", "released from its duplicate hold")
            else:
                conn.execute(
                    "UPDATE files SET held_reason = NULL, approved_at = ?, updated_at = ? "
                    "WHERE id = ?",
                    (now, now, file_id),
                )
                self._event(conn, file_id, "approved", "released from its budget hold")
            conn.execute("UPDATE files SET updated_at = ? WHERE id = ?", (now, file_id))
            self._bump_control(conn)

    @staticmethod
    def _release_duplicate_hold(conn: sqlite3.Connection, file_id: int, now: str) -> bool:
        released = conn.execute(
            "UPDATE files SET duplicate_approved_at = ? WHERE id = ? "
            "AND duplicate_reason IS NOT NULL AND duplicate_approved_at IS NULL",
            (now, file_id),
        )
        return released.rowcount > 0

    def same_content_candidates(
        self, file_id: int, size: int, fingerprint: str
    ) -> list[FileRecord]:
        """Other rows with this size and fingerprint whose capture was made and is not failed
        or deleted, or that were admitted for upload (this version) and are not held as a
        copy themselves: the same bytes uploaded before, perhaps; oldest first."""
        rows = self._query(
            """SELECT * FROM files WHERE size = ? AND fingerprint = ? AND id != ?
               AND ((eid IS NOT NULL AND (capture_state IS NULL
                       OR UPPER(capture_state) NOT IN ('FAILED', 'ERROR', 'DELETED')))
                 OR (eid IS NULL AND upload_state IN ('pending', 'uploading', 'failed')
                     AND control_fingerprint = fingerprint
                     AND (duplicate_reason IS NULL OR duplicate_approved_at IS NOT NULL)))
               ORDER BY id""",
            (size, fingerprint, file_id),
        )
        return self._records(rows)

    def mark_duplicate(self, file_id: int, sentence: str, *, hold: bool) -> None:
        """This version is the same bytes as an earlier upload: held until `approve`, or (warn)
        let go at once with the sentence kept."""
        now = utc_now()
        # Through `recorded` like every free text: the sentence names the earlier file, whose
        # name may hold bytes that are not UTF-8 (SQLite would refuse the raw surrogates).
        with self._transaction() as conn:
            conn.execute(
                "UPDATE files SET duplicate_reason = ?, duplicate_approved_at = ?, "
                "updated_at = ? WHERE id = ?",
                (recorded(sentence), None if hold else now, now, file_id),
            )
            self._event(conn, file_id, "held" if hold else "duplicate", sentence)

    def day_usage(self, day: str) -> tuple[int, int]:
        """(frames, captures) counted on UTC `day` (YYYY-MM-DD)."""
        rows = self._query("SELECT frames, captures FROM budget_days WHERE day = ?", (day,))
        return (rows[0]["frames"], rows[0]["captures"]) if rows else (0, 0)

    def admit_within_budget(
        self, file_id: int, day: str, frames: int, check: Callable[[int, int], str | None]
    ) -> str | None:
        """Count the file against UTC `day`'s budget, or hold it: atomically, so two uploads
        starting together cannot both take the last of a budget.

        `check(frames_today, captures_today)` says why one more capture does not fit (or None).
        A file already counted (this version) or approved is counted without asking. Returns
        the hold's reason, or None when the file may go.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT budget_day, approved_at FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            if row["budget_day"] is not None:
                return None
            usage = conn.execute(
                "SELECT frames, captures FROM budget_days WHERE day = ?", (day,)
            ).fetchone()
            problem = None if row["approved_at"] else check(*(usage or (0, 0)))
            if problem is not None:
                conn.execute(
                    "UPDATE files SET held_reason = ?, updated_at = ? WHERE id = ?",
                    (recorded(problem), utc_now(), file_id),
                )
                self._event(conn, file_id, "held", problem)
                return problem
            conn.execute(
                "INSERT INTO budget_days (day, frames, captures) VALUES (?, ?, 1) "
                "ON CONFLICT(day) DO UPDATE SET frames = frames + excluded.frames, "
                "captures = captures + 1",
                (day, frames),
            )
            conn.execute(
                "UPDATE files SET budget_day = ?, held_reason = NULL WHERE id = ?", (day, file_id)
            )
        return None
