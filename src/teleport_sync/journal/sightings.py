"""Sightings: files noticed but not yet handed to the uploader; forgetting paths."""

from __future__ import annotations

from .base import BaseJournal, _db_path, _py_path, recorded, shown, utc_now


class SightingsMixin(BaseJournal):
    """Paths noticed (settling, incomplete) before they have a file row."""

    def note_sighting(self, path: str, root: str, reason: str) -> None:
        """`path` was noticed: a `settling` row, unless it already has one."""
        self.note_sightings([path], root, reason)

    def note_sightings(self, paths: list[str], root: str, reason: str) -> None:
        """Sightings for many paths in one transaction (a scan may find thousands)."""
        if not paths:
            return
        now = utc_now()
        with self._transaction() as conn:
            conn.executemany(
                """INSERT INTO sightings (path, root, stage, reason, first_seen_at, updated_at)
                   VALUES (?, ?, 'settling', ?, ?, ?) ON CONFLICT(path) DO NOTHING""",
                [(_db_path(path), shown(root), recorded(reason), now, now) for path in paths],
            )

    def mark_incomplete(self, path: str, root: str, size: int, mtime_ns: int, reason: str) -> str:
        """`path` is not complete yet; returns since when it has been so, unchanged.

        The time is kept while size and mtime stay the same, across restarts too: a writer that
        makes progress resets it, a restart does not.
        """
        now = utc_now()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT size, mtime_ns, incomplete_since FROM sightings WHERE path = ?",
                (_db_path(path),),
            ).fetchone()
            same = row is not None and (row["size"], row["mtime_ns"]) == (size, mtime_ns)
            since = row["incomplete_since"] if same and row["incomplete_since"] else now
            conn.execute(
                """INSERT INTO sightings (path, root, stage, reason, size, mtime_ns,
                       first_seen_at, incomplete_since, updated_at)
                   VALUES (?, ?, 'incomplete', ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET stage = 'incomplete', reason = excluded.reason,
                       size = excluded.size, mtime_ns = excluded.mtime_ns,
                       incomplete_since = excluded.incomplete_since,
                       updated_at = excluded.updated_at""",
                (_db_path(path), shown(root), recorded(reason), size, mtime_ns, now, since, now),
            )
        return since

    def drop_sighting(self, path: str) -> None:
        """`path` was handed over, rejected, ignored or is gone: its sighting ends."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM sightings WHERE path = ?", (_db_path(path),))

    def sighting_paths(self) -> list[str]:
        return [
            _py_path(r["path"]) for r in self._query("SELECT path FROM sightings ORDER BY path")
        ]

    def known_paths(self) -> list[str]:
        """Every path with a row (files and sightings), as the OS names it (any bytes)."""
        rows = self._query("SELECT path FROM files UNION SELECT path FROM sightings")
        return [_py_path(r["path"]) for r in rows]

    def forget_paths(self, paths: list[str]) -> int:
        """Drop these paths' rows (file, parts, states, events, sighting); returns how many."""
        dropped = 0
        with self._transaction() as conn:
            for path in map(_db_path, paths):
                row = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
                if row is not None:
                    self._discard_unfinished_capture(conn, row["id"], "forgotten")
                    for table in ("parts", "state_history", "events"):
                        conn.execute(f"DELETE FROM {table} WHERE file_id = ?", (row["id"],))
                    conn.execute("DELETE FROM files WHERE id = ?", (row["id"],))
                gone = conn.execute("DELETE FROM sightings WHERE path = ?", (path,)).rowcount
                dropped += int(row is not None or gone > 0)
            self._event(conn, None, "forgotten", f"{dropped} row(s)")
        return dropped
