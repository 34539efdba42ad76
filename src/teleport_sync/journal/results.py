"""Results: actions done after a capture ended, downloaded models and previews."""

from __future__ import annotations

import json
from collections.abc import Callable

from .base import BaseJournal, _db_path, _py_path, recorded, utc_now


def _overlap(folder: str, claims: dict[str, str]) -> tuple[str, str] | None:
    """(claimed folder, its input's path) for a claim that is `folder`, holds it, or lies in
    it; None when `folder` is free."""
    for claimed, path in claims.items():
        if (
            claimed == folder
            or claimed.startswith(folder + "/")
            or folder.startswith(claimed + "/")
        ):
            return claimed, path
    return None


def _beside(folder: str, claimed: str, tag: str) -> str:
    """`folder` moved off `claimed`: the name that meets it gets `.tag` (`x.zip` ->
    `x.zip.TAG`; below a claimed `x.zip`, `x.zip.TAG/ply`)."""
    if folder.startswith(claimed + "/"):
        return f"{claimed}.{tag}{folder[len(claimed) :]}"
    return f"{folder}.{tag}"


# Clears what `_migrate_v7_results` added, for a file that starts over.
_FORGET_RESULTS = """UPDATE files SET results_by_profile = '{}', preview_paths = '[]',
    result_error = NULL, result_attempts = 0, result_next_at = NULL, viewer_url = NULL,
    teleport_posed = NULL WHERE id = ?"""


class ResultsMixin(BaseJournal):
    """What was done with an ended capture, and where its results are."""

    def mark_action(
        self,
        file_id: int,
        action: str,
        result_paths: list[str] | None = None,
        *,
        eid: str | None = None,
    ) -> None:
        """Record that `action` ran (or began, for actions that must never run twice); with
        `eid`, only while the row still has that capture (`StaleCapture` otherwise)."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
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
        self,
        file_id: int,
        by_profile: dict[str, list[str]],
        previews: list[str],
        *,
        eid: str | None = None,
    ) -> None:
        """The models (and previews) are on disk: keep where, clear any download error."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
            conn.execute(
                """UPDATE files SET results_by_profile = ?, preview_paths = ?, result_error = NULL,
                       result_attempts = 0, result_next_at = NULL, updated_at = ? WHERE id = ?""",
                (json.dumps(by_profile), json.dumps(previews), utc_now(), file_id),
            )

    def record_result_error(
        self, file_id: int, error: str, next_at: str | None, *, eid: str | None = None
    ) -> None:
        """A download failed: why, one more attempt counted, and when to try again."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
            conn.execute(
                """UPDATE files SET result_error = ?, result_attempts = result_attempts + 1,
                       result_next_at = ?, updated_at = ? WHERE id = ?""",
                (recorded(error), next_at, utc_now(), file_id),
            )
            self._event(conn, file_id, "result_error", error)

    def claim_result_dir(
        self,
        file_id: int,
        wanted: str,
        tag: str,
        *,
        in_use: Callable[[str], bool] = lambda folder: False,
    ) -> tuple[str, str | None]:
        """The one folder this file's models go to: its own claim if it has one, else `wanted`,
        unless another row claims it (or a folder inside or around it) or `in_use` says it
        holds files already (models of a capture this journal no longer knows: a `forget`,
        a lost journal): then the name that meets the other gets `.tag` (the eid; `.tag.2`,
        ... if that is taken too). Returns (folder, what it collided with, or None).

        Claimed in one transaction, so two captures can never be handed the same folder; a
        new version of the same input keeps its folder (its models replace its own)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT result_dir FROM files WHERE id = ?", (file_id,)).fetchone()
            if row["result_dir"]:
                return _py_path(row["result_dir"]), None
            claims = {
                _py_path(r["result_dir"]): _py_path(r["path"])
                for r in conn.execute(
                    "SELECT result_dir, path FROM files WHERE result_dir IS NOT NULL AND id != ?",
                    (file_id,),
                )
            }
            unknown = "models of a capture this journal does not know"
            first = _overlap(wanted, claims) or ((wanted, unknown) if in_use(wanted) else None)
            chosen, number = wanted, 1
            while met := _overlap(chosen, claims) or ((chosen, "") if in_use(chosen) else None):
                # Each step leaves one claim behind for good: at most one step per claim.
                chosen = _beside(chosen, met[0], tag if number == 1 else f"{tag}.{number}")
                number += 1
            conn.execute(
                "UPDATE files SET result_dir = ? WHERE id = ?", (_db_path(chosen), file_id)
            )
            if first is not None:
                self._event(
                    conn,
                    file_id,
                    "results-folder",
                    f"{wanted} is taken ({first[1]}); using {chosen}",
                )
            return chosen, first[1] if first is not None else None

    def record_viewer_url(self, file_id: int, url: str | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE files SET viewer_url = ? WHERE id = ?", (url, file_id))
