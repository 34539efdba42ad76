"""Queries for the status report and the counts shown beside it."""

from __future__ import annotations

import json
from typing import Any

from .base import BaseJournal, _py_path
from .captures import history_entry
from .preflight import PREFLIGHT_COLUMNS, PREFLIGHT_JOIN


class ReportMixin(BaseJournal):
    """Reads for `status`, the console and metrics: every row at once, and counts."""

    def report_rows(self) -> list[dict[str, Any]]:
        """Raw facts for the status report: every file and every sighting, in three queries.

        Each dict has the files table's columns plus `parts_done`, `state_history`, the
        pre-flight result's columns (`preflight_*`, None until checked) and `sighting` (the
        sighting's stage, reason and times, or None); sightings of paths with no file row come
        as dicts with only `path` and `sighting` set.
        """
        files = self._query(
            f"""SELECT f.*, (SELECT COUNT(*) FROM parts pt WHERE pt.file_id = f.id) AS parts_done,
                   {PREFLIGHT_COLUMNS}
               FROM files f {PREFLIGHT_JOIN} ORDER BY f.id"""
        )
        history: dict[int, list[dict[str, Any]]] = {}
        for r in self._query(
            "SELECT file_id, state, observed_at, source, applied, note FROM state_history "
            "ORDER BY id"
        ):
            history.setdefault(r["file_id"], []).append(history_entry(r))
        sightings = {
            _py_path(r["path"]): {**dict(r), "path": _py_path(r["path"])}
            for r in self._query("SELECT * FROM sightings")
        }
        out: list[dict[str, Any]] = []
        for row in files:
            item = dict(row)
            item["path"] = _py_path(row["path"])
            item["state_history"] = history.get(row["id"], [])
            item["result_paths"] = json.loads(row["result_paths"] or "[]")
            item["actions_done"] = json.loads(row["actions_done"] or "[]")
            item["results_by_profile"] = json.loads(row["results_by_profile"] or "{}")
            item["preview_paths"] = json.loads(row["preview_paths"] or "[]")
            item["sighting"] = sightings.pop(item["path"], None)
            out.append(item)
        for path, sighting in sorted(sightings.items()):
            out.append({"path": path, "sighting": sighting})
        return out

    def capture_counts(self) -> dict[str, int]:
        rows = self._query(
            "SELECT capture_state, COUNT(*) AS n FROM files WHERE capture_state IS NOT NULL "
            "GROUP BY capture_state"
        )
        return {r["capture_state"]: r["n"] for r in rows}

    def counts_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT upload_state, COUNT(*) AS n FROM files GROUP BY upload_state")
        return {r["upload_state"]: r["n"] for r in rows}

    def failing_since(self) -> dict[str, str]:
        """For each failed file (by path): when its current run of failures began.

        `attempts` counts the failures since the file last got through (or started over), and
        each failure journals a `failed` event: the run began at the oldest of the last
        `attempts` of them. A retried file's `updated_at` moves on at every attempt, so it
        cannot say how long the file has been failing.
        """
        failed = {
            r["id"]: (r["path"], max(1, r["attempts"] or 0))
            for r in self._query(
                "SELECT id, path, attempts FROM files WHERE upload_state = 'failed'"
            )
        }
        if not failed:  # the usual case: no scan of the events at all
            return {}
        since: dict[str, str] = {}
        seen: dict[int, int] = {}
        for r in self._query(
            "SELECT file_id, at FROM events WHERE kind = 'failed' AND file_id IN "
            "(SELECT id FROM files WHERE upload_state = 'failed') ORDER BY id DESC"
        ):
            if r["file_id"] not in failed:  # failed since the first query: next time
                continue
            path, attempts = failed[r["file_id"]]
            seen[r["file_id"]] = n = seen.get(r["file_id"], 0) + 1
            if n <= attempts:
                since[_py_path(path)] = r["at"]
        return since
