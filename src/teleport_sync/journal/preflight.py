"""Pre-flight results: one per file version, its approval, and its worst frames' pictures."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .base import BaseJournal, utc_now

# The columns `report_rows` and `control_facts` add to a file's row (None until checked).
PREFLIGHT_COLUMNS = (
    "p.fingerprint AS preflight_fingerprint, p.verdict AS preflight_verdict, "
    "p.summary AS preflight_summary, p.report AS preflight_report, "
    "p.checked_at AS preflight_checked_at, p.approved_at AS preflight_approved_at"
)
PREFLIGHT_JOIN = "LEFT JOIN preflight p ON p.file_id = f.id"


@dataclass(frozen=True)
class PreflightRow:
    file_id: int
    fingerprint: str
    verdict: str  # ok, warn or hold
    summary: str | None  # the reasons, in one sentence
    report: dict[str, Any]  # the `preflight` object of `status --json`, less these columns
    checked_at: str
    approved_at: str | None

    @property
    def holds(self) -> bool:
        return self.verdict == "hold" and self.approved_at is None


class PreflightMixin(BaseJournal):
    """Pre-flight results, journaled once per file version."""

    def preflight_of(self, file_id: int) -> PreflightRow | None:
        rows = self._query("SELECT * FROM preflight WHERE file_id = ?", (file_id,))
        if not rows:
            return None
        r = rows[0]
        return PreflightRow(
            r["file_id"],
            r["fingerprint"],
            r["verdict"],
            r["summary"],
            json.loads(r["report"]),
            r["checked_at"],
            r["approved_at"],
        )

    def save_preflight(
        self,
        file_id: int,
        fingerprint: str,
        verdict: str,
        report: dict[str, Any],
        frames: list[tuple[str, bytes]],
    ) -> PreflightRow:
        """The result for the version `fingerprint`, replacing any earlier one (and its
        approval, which was for another version) and its pictures, in one transaction."""
        summary = "; ".join(report.get("reasons") or []) or None
        now = utc_now()
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO preflight (file_id, fingerprint, verdict, summary, report,
                       checked_at, approved_at) VALUES (?, ?, ?, ?, ?, ?, NULL)
                   ON CONFLICT(file_id) DO UPDATE SET fingerprint = excluded.fingerprint,
                       verdict = excluded.verdict, summary = excluded.summary,
                       report = excluded.report, checked_at = excluded.checked_at,
                       approved_at = NULL""",
                (file_id, fingerprint, verdict, summary, json.dumps(report), now),
            )
            conn.execute("DELETE FROM preflight_frames WHERE file_id = ?", (file_id,))
            conn.executemany(
                "INSERT INTO preflight_frames (file_id, rank, name, jpeg) VALUES (?, ?, ?, ?)",
                [(file_id, rank, name, jpeg) for rank, (name, jpeg) in enumerate(frames)],
            )
            if verdict != "ok":
                self._event(conn, file_id, f"preflight-{verdict}", summary or "")
        return PreflightRow(file_id, fingerprint, verdict, summary, report, now, None)

    def save_pose_result(
        self,
        file_id: int,
        fingerprint: str,
        verdict: str,
        report: dict[str, Any],
        *,
        pose_holds: bool,
    ) -> PreflightRow:
        """The version's result with the pose check's part merged in by the caller (`report`,
        `verdict`: the stronger of the two). Its worst frames stay; an approval stays unless
        the pose check now holds it (the operator approved without seeing that)."""
        summary = "; ".join(report.get("reasons") or []) or None
        now = utc_now()
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT fingerprint, approved_at FROM preflight WHERE file_id = ?", (file_id,)
            ).fetchall()
            same = bool(rows) and rows[0]["fingerprint"] == fingerprint
            approved = rows[0]["approved_at"] if same and not pose_holds else None
            if not same:
                conn.execute("DELETE FROM preflight_frames WHERE file_id = ?", (file_id,))
            conn.execute(
                """INSERT INTO preflight (file_id, fingerprint, verdict, summary, report,
                       checked_at, approved_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(file_id) DO UPDATE SET fingerprint = excluded.fingerprint,
                       verdict = excluded.verdict, summary = excluded.summary,
                       report = excluded.report, checked_at = excluded.checked_at,
                       approved_at = excluded.approved_at""",
                (file_id, fingerprint, verdict, summary, json.dumps(report), now, approved),
            )
            self._event(conn, file_id, f"pose-{verdict}", summary or "")
        return PreflightRow(file_id, fingerprint, verdict, summary, report, now, approved)

    def preflight_frame(self, file_id: int, rank: int) -> tuple[str, bytes] | None:
        """(name, JPEG) of the `rank`-th worst frame of the file's last check, or None."""
        rows = self._query(
            "SELECT name, jpeg FROM preflight_frames WHERE file_id = ? AND rank = ?",
            (file_id, rank),
        )
        return (rows[0]["name"], bytes(rows[0]["jpeg"])) if rows else None

    def preflight_frame_names(self, file_id: int) -> list[str]:
        rows = self._query(
            "SELECT name FROM preflight_frames WHERE file_id = ? ORDER BY rank", (file_id,)
        )
        return [r["name"] for r in rows]

    def _release_preflight_hold(self, conn: sqlite3.Connection, file_id: int, now: str) -> bool:
        """Approve a pre-flight hold of the file's current version (in the caller's
        transaction); False when pre-flight does not hold it."""
        released = conn.execute(
            """UPDATE preflight SET approved_at = ? WHERE file_id = ? AND verdict = 'hold'
                   AND approved_at IS NULL
                   AND fingerprint = (SELECT fingerprint FROM files WHERE id = ?)""",
            (now, file_id, file_id),
        ).rowcount
        if released:
            self._event(conn, file_id, "approved", "released from its pre-flight hold")
        return bool(released)
