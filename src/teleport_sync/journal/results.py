"""Results: actions done after a capture ended, downloaded models and previews."""

from __future__ import annotations

import json

from .base import BaseJournal, utc_now

# Clears what `_migrate_v7_results` added, for a file that starts over.
_FORGET_RESULTS = """UPDATE files SET results_by_profile = '{}', preview_paths = '[]',
    result_error = NULL, result_attempts = 0, result_next_at = NULL, viewer_url = NULL
    WHERE id = ?"""


class ResultsMixin(BaseJournal):
    """What was done with an ended capture, and where its results are."""

    def mark_action(self, file_id: int, action: str, result_paths: list[str] | None = None) -> None:
        """Record that `action` ran (or began, for actions that must never run twice)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT actions_done, result_paths FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            done = json.loads(row["actions_done"] or "[]")
            if action not in done:
                done.append(action)
            paths = json.loads(row["result_paths"] or "[]")
            for path in result_paths or []:
                if path not in paths:
                    paths.append(path)
            conn.execute(
                "UPDATE files SET actions_done = ?, result_paths = ?, updated_at = ? WHERE id = ?",
                (json.dumps(done), json.dumps(paths), utc_now(), file_id),
            )
            self._event(conn, file_id, "action", action)

    def record_results(
        self, file_id: int, by_profile: dict[str, list[str]], previews: list[str]
    ) -> None:
        """The models (and previews) are on disk: keep where, clear any download error."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET results_by_profile = ?, preview_paths = ?, result_error = NULL,
                       result_attempts = 0, result_next_at = NULL, updated_at = ? WHERE id = ?""",
                (json.dumps(by_profile), json.dumps(previews), utc_now(), file_id),
            )

    def record_result_error(self, file_id: int, error: str, next_at: str | None) -> None:
        """A download failed: why, one more attempt counted, and when to try again."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET result_error = ?, result_attempts = result_attempts + 1,
                       result_next_at = ?, updated_at = ? WHERE id = ?""",
                (error, next_at, utc_now(), file_id),
            )
            self._event(conn, file_id, "result_error", error)

    def record_viewer_url(self, file_id: int, url: str | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE files SET viewer_url = ? WHERE id = ?", (url, file_id))
