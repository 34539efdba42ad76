"""Queries for the status report and the counts shown beside it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .base import BaseJournal, _py_path
from .captures import history_entry
from .preflight import PREFLIGHT_COLUMNS, PREFLIGHT_JOIN


class FinishedRow(NamedTuple):
    """What a finished row's filters and `forget --before` read of it."""

    id: int
    path: str
    capture_state: str | None
    updated_at: str


class ReportMixin(BaseJournal):
    """Reads for `status`, the console and metrics: every row at once, and counts."""

    def report_rows(
        self,
        *,
        finished: int | None = None,
        download_wanted: bool = True,
        file_id: int | None = None,
        file_ids: list[int] | None = None,
        finished_ids: list[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Raw facts for the status report: every file and every sighting, in three queries.

        Each dict has the files table's columns plus `parts_done`, `state_history`, the
        pre-flight result's columns (`preflight_*`, None until checked) and `sighting` (the
        sighting's stage, reason and times, or None); sightings of paths with no file row come
        as dicts with only `path` and `sighting` set.

        With `finished` = n, only the `finished_count` rows' n most recently changed are read
        (besides all the others): what a year of finished rows costs stays out of counts, the
        console and the table, whose cost then follows the work in hand. With `file_id`, that
        file's row alone (no sightings of paths without a row). With `file_ids`, those rows and
        the sightings of paths without a row (`status --json`: the rows SQLite did not render).
        With `finished_ids`, of the finished rows only those (`status --path`, say: chosen by
        `finished_rows`); with `finished` too, the n most recently changed of those.
        """
        where, args = _report_where(finished, download_wanted, file_id, file_ids, finished_ids)
        files = self._query(
            f"""SELECT f.*, (SELECT COUNT(*) FROM parts pt WHERE pt.file_id = f.id) AS parts_done,
                   {PREFLIGHT_COLUMNS}
               FROM files f {PREFLIGHT_JOIN} {where} ORDER BY f.id""",
            args,
        )
        some = where != ""
        history = self._histories([row["id"] for row in files] if some else None)
        sightings = {
            _py_path(r["path"]): {**dict(r), "path": _py_path(r["path"])}
            for r in self._query(*_sightings_sql(file_ids))
        }
        if file_id is not None:
            paths = {_py_path(row["path"]) for row in files}
            sightings = {p: v for p, v in sightings.items() if p in paths}
        out: list[dict[str, Any]] = []
        for row in files:
            item = dict(row)
            item["path"] = _py_path(row["path"])
            item["state_history"] = history.get(row["id"], [])
            item["result_paths"] = _json_list(row["result_paths"])
            item["actions_done"] = _json_list(row["actions_done"])
            item["results_by_profile"] = _json_dict(row["results_by_profile"])
            item["preview_paths"] = _json_list(row["preview_paths"])
            item["sighting"] = sightings.pop(item["path"], None)
            out.append(item)
        for path, sighting in sorted(sightings.items()):
            out.append({"path": path, "sighting": sighting})
        return out

    def _histories(self, file_ids: list[int] | None) -> dict[int, list[dict[str, Any]]]:
        """Each file's state history, oldest first: of these files (by the index on file_id),
        or of every file (one scan)."""
        sql = "SELECT file_id, state, observed_at, source, applied, note FROM state_history"
        args: tuple[str, ...] = ()
        if file_ids is not None:
            sql += " WHERE file_id IN (SELECT value FROM json_each(?))"
            args = (json.dumps(file_ids),)
        history: dict[int, list[dict[str, Any]]] = {}
        for r in self._query(sql + " ORDER BY id", args):
            history.setdefault(r["file_id"], []).append(history_entry(r))
        return history

    def finished_rows(self, *, download_wanted: bool = True) -> list[FinishedRow]:
        """Id, path, capture state and updated_at of every finished row (`_finished_sql`):
        what `forget --before` and the filters of `status` need of a year of them, without
        building their status rows (their phase is `done`, and no sighting moves their time)."""
        done = _finished_sql(download_wanted)
        rows = self._query(
            f"SELECT id, path, capture_state, updated_at FROM files f WHERE {done} ORDER BY id"
        )
        return [FinishedRow(r[0], _py_path(r[1]), r[2], r[3]) for r in rows]

    def file_ids(self) -> list[tuple[str, int]]:
        """(path, id) of every file row: one light query (no record is built)."""
        return [(_py_path(r["path"]), r["id"]) for r in self._query("SELECT id, path FROM files")]

    def finished_count(self, *, download_wanted: bool = True) -> int:
        """File rows nothing more will happen to that `status` calls done (see
        `_finished_sql`): counted, never read, by `report_rows(finished=n)`'s readers."""
        done = _finished_sql(download_wanted)
        return int(self._query(f"SELECT COUNT(*) AS n FROM files f WHERE {done}")[0]["n"])

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


def _report_where(
    finished: int | None,
    download_wanted: bool,
    file_id: int | None,
    file_ids: list[int] | None,
    finished_ids: list[int] | None = None,
) -> tuple[str, dict[str, str]]:
    """`report_rows`'s WHERE clause and its arguments."""
    if file_id is not None:
        return f"WHERE f.id = {int(file_id)}", {}
    if file_ids is not None:
        return "WHERE f.id IN (SELECT value FROM json_each(:file_ids))", {
            "file_ids": json.dumps(file_ids)
        }
    return finished_where(download_wanted, finished_ids, finished)


def finished_where(
    download_wanted: bool, finished_ids: list[int] | None, latest: int | None = None
) -> tuple[str, dict[str, str]]:
    """A WHERE clause and its named argument: every row not finished, and of the finished ones
    those in `finished_ids` (None: all), the `latest` n most recently changed (None: all)."""
    if finished_ids is None and latest is None:
        return "", {}
    done = _finished_sql(download_wanted)
    args = {} if finished_ids is None else {"finished_ids": json.dumps(finished_ids)}
    among = "f.id IN (SELECT value FROM json_each(:finished_ids))"
    if latest is None:  # an id not finished is kept either way: no second test of `done`
        return f"WHERE NOT ({done}) OR {among}", args
    among = f"AND {among} " if args else ""
    return (
        f"WHERE NOT ({done}) OR f.id IN (SELECT f.id FROM files f WHERE {done} {among}"
        f"ORDER BY f.updated_at DESC LIMIT {int(latest)})"
    ), args


def _sightings_sql(file_ids: list[int] | None) -> tuple[str, tuple[str, ...]]:
    """Every sighting; with `file_ids`, less those of rows not among them (a sighting belongs
    to its path's row, and is shown with it)."""
    if file_ids is None:
        return "SELECT * FROM sightings", ()
    return (
        "SELECT * FROM sightings WHERE path NOT IN (SELECT path FROM files WHERE id NOT IN "
        "(SELECT value FROM json_each(?)))",
        (json.dumps(file_ids),),
    )


def _finished_sql(download_wanted: bool) -> str:
    """Rows whose phase is `done` whatever else `status.phases.derive` is told: the upload
    was completed, the capture is READY with its models fetched (or not wanted) or was deleted,
    the listing shows it, and the path is not being written again (no sighting)."""
    # Never NULL (NOT of a NULL would leave a row out of both halves).
    state = "COALESCE(UPPER(f.capture_state), '')"
    fetched = "COALESCE(f.actions_done, '') LIKE '%\"download\"%'" if download_wanted else "1"
    return (
        "f.upload_state = 'uploaded' AND f.unlisted_since IS NULL "
        "AND f.path NOT IN (SELECT path FROM sightings) "
        f"AND ({state} = 'DELETED' OR ({state} = 'READY' AND {fetched}))"
    )


# Most rows hold empty lists and maps: 50,000 rows are 200,000 json.loads calls saved.
def _json_list(text: str | None) -> list[Any]:
    return json.loads(text) if text and text != "[]" else []


def _json_dict(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text and text != "{}" else {}
