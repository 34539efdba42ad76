"""Parts: one row per acknowledged part, committed before anything else happens."""

from __future__ import annotations

from .base import BaseJournal, utc_now
from .records import PartRecord


class PartsMixin(BaseJournal):
    """The acknowledged parts of a file's upload."""

    def record_part(self, file_id: int, number: int, size: int, md5: str, etag: str) -> None:
        """One acknowledged part, durably, before anything else happens."""
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO parts (file_id, number, size, md5, etag, acknowledged_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(file_id, number) DO UPDATE SET size = excluded.size,
                       md5 = excluded.md5, etag = excluded.etag,
                       acknowledged_at = excluded.acknowledged_at""",
                (file_id, number, size, md5, etag, utc_now()),
            )

    def parts(self, file_id: int) -> dict[int, PartRecord]:
        rows = self._query("SELECT * FROM parts WHERE file_id = ? ORDER BY number", (file_id,))
        return {
            r["number"]: PartRecord(
                r["number"], r["size"], r["md5"], r["etag"], r["acknowledged_at"]
            )
            for r in rows
        }

    def forget_parts(self, file_id: int, why: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
            self._event(conn, file_id, "parts-forgotten", why)
