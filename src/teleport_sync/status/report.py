"""The `status --json` contract: one object per noticed file, built from the journal's facts.

Kept out of the journal (storage) and the CLI (presentation): the web console, `health` and the
daemon's STATUS line read the same rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from ..inputs import FORMATS_BY_SUFFIX
from ..journal import Journal, UploadState, shown, shown_path
from ..logging import printable
from ..models import TeleportPosed
from .filters import RowFilter
from .phases import DELETED_STATE, PHASES, PhaseFacts, derive

# Given a raw journal row, the sentence saying why the file is held or paused (or None).
ReasonHook = Callable[[dict[str, Any]], str | None]


def _none(row: dict[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class ReportOptions:
    """What the journal alone cannot say: settings and the decisions of budgets and pauses."""

    download_wanted: bool = True
    # None: as the journal says (`control`: budget holds, `pause`).
    held: ReasonHook | None = None
    paused: ReasonHook | None = None
    # Why no upload can start now (the running daemon's authentication is failing), or None.
    blocked: str | None = None
    # Why no upload can start now from the row's folder (its claim is being confirmed), or None.
    waiting: ReasonHook | None = None


def status_rows(
    journal: Journal,
    options: ReportOptions | None = None,
    *,
    finished: int | None = None,
    file_id: int | None = None,
    finished_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Every file the journal knows, files being written included, as the contract's objects.

    `finished` = n: of the rows that are done for good, only the n most recently changed
    (`Journal.report_rows`); `live_counts` counts the others. `file_id`: that file's row.
    `finished_ids`: of the finished rows, only these (`finished_kept`)."""
    options = _with_hooks(journal, options)
    raws = journal.report_rows(
        finished=finished,
        download_wanted=options.download_wanted,
        file_id=file_id,
        finished_ids=finished_ids,
    )
    return [_printable(_row(raw, options)) for raw in raws]


def finished_kept(
    journal: Journal, options: ReportOptions | None, row_filter: RowFilter
) -> list[int] | None:
    """The ids of the finished rows (`Journal.finished_rows`) that `row_filter` keeps, judged
    on their phase, time and shown path alone (no row built), or None when it keeps all of
    them (no filter, only phases with `done` among them, or every row passed). A finished row
    is `done` and no sighting moves its time: its status row would give the filter the same
    three values."""
    wanted = (options or ReportOptions()).download_wanted
    phase = _finished_phase(wanted)[0]
    if not row_filter.wants_phase(phase):
        return []  # no finished row is read
    if row_filter.since is None and not row_filter.paths:
        return None
    finished = journal.finished_rows(download_wanted=wanted)
    kept = [
        row.id
        for row in finished
        if row_filter.keeps_values(phase, row.updated_at, shown_path(row.path))
    ]
    return None if len(kept) == len(finished) else kept  # all: no list for SQL to look in


def _finished_phase(download_wanted: bool) -> tuple[str, str | None, str | None]:
    """What `derive` says of a finished row: its phase, and its reason when READY and when
    DELETED."""
    fetched = PhaseFacts(UploadState.UPLOADED, "READY", actions_done=("download",))
    phase, ready = derive(replace(fetched, download_wanted=download_wanted))
    deleted = derive(PhaseFacts(UploadState.UPLOADED, DELETED_STATE))[1]
    return phase, ready, deleted


def status_json_lines(
    journal: Journal, options: ReportOptions | None = None, row_filter: RowFilter | None = None
) -> Iterator[str]:
    """Every row of `status_rows(journal, options)` that `row_filter` keeps, in its order, as
    `json.dumps` prints it: the lines of `status --json`, at a cost that a year of finished
    rows barely moves.

    SQLite renders the finished rows (`Journal.finished_json`: their phase and reason are the
    ones `derive` gives, asked here), only those the filter keeps (`finished_kept`); a line
    holding a backslash, DEL or anything but ASCII is left to this module, as is every row in
    hand (`_row`, the contract's one reference), which the filter judges once built."""
    options = _with_hooks(journal, options)
    row_filter = row_filter or RowFilter()
    wanted = options.download_wanted
    phase, ready, deleted = _finished_phase(wanted)
    with journal.snapshot():
        rendered = [
            (file_id, line if line is not None and _plain(line) else None)
            for file_id, line in journal.finished_json(
                download_wanted=wanted,
                phase=phase,
                ready=ready,
                deleted=deleted,
                finished_ids=finished_kept(journal, options, row_filter),
            )
        ]
        built = journal.report_rows(
            file_ids=[file_id for file_id, line in rendered if line is None],
            download_wanted=wanted,
        )
    by_id = {raw["id"]: raw for raw in built if "id" in raw}
    for file_id, line in rendered:
        if line is not None:  # a finished row the filter kept
            yield line
        elif row_filter.keeps(row := _printable(_row(by_id[file_id], options))):
            yield json.dumps(row)
    for raw in built:
        # Noticed, no row yet: after the rows, as `report_rows` has them.
        if "id" not in raw and row_filter.keeps(row := _printable(_row(raw, options))):
            yield json.dumps(row)


def _plain(line: str) -> bool:
    """Printable ASCII without a backslash (so no value in it had an escape): what SQLite,
    `json.dumps`, `logging.printable` and `journal.shown_path` all leave as it is."""
    return line.isascii() and "\\" not in line and "\x7f" not in line


def _with_hooks(journal: Journal, options: ReportOptions | None) -> ReportOptions:
    """`options`, with the journal's own holds and pauses where none were given."""
    options = options or ReportOptions()
    if options.held is None or options.paused is None:
        from ..control.holds import report_hooks

        held, paused = report_hooks(journal)
        options = replace(options, held=options.held or held, paused=options.paused or paused)
    return options


def live_counts(
    journal: Journal, options: ReportOptions | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows still in play (no finished one read) and the count of every phase, finished
    rows included: `health`, the daemon's gauges and STATUS= cost what is in hand, not the
    journal's whole history."""
    options = options or ReportOptions()
    rows = status_rows(journal, options, finished=0)
    counts = phase_counts(rows)
    counts["done"] += journal.finished_count(download_wanted=options.download_wanted)
    return rows, counts


def _printable(row: dict[str, Any]) -> dict[str, Any]:
    # File names that are not UTF-8 are journaled as their bytes; shown, they get \x escapes
    # (and paths one text per file: `journal.shown_path`).
    # Reasons are partly built as status reads them (a hold's sentence, with the file's path):
    # control characters are escaped here too, as the journal does for what it stores.
    for key in ("name", "error", "reason"):
        if isinstance(row.get(key), str):
            row[key] = shown(printable(row[key]))
    row["path"] = shown_path(row["path"])
    row["result_paths"] = [shown_path(p) for p in row["result_paths"]]
    row["preview_paths"] = [shown_path(p) for p in row.get("preview_paths") or []]
    row["results_by_profile"] = {
        profile: [shown_path(p) for p in paths]
        for profile, paths in (row.get("results_by_profile") or {}).items()
    }
    return row


def phase_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """`{"<phase>": n}` for every phase (zeros included, so gauges can go back to 0)."""
    counted = Counter(row["phase"] for row in rows)
    return {phase: counted.get(phase, 0) for phase in PHASES}


def _row(raw: dict[str, Any], options: ReportOptions) -> dict[str, Any]:
    sighting = raw.get("sighting")
    if "id" not in raw:  # noticed, never handed to the uploader
        return _sighting_only(raw["path"], sighting)
    phase, reason = derive(
        PhaseFacts(
            upload_state=raw["upload_state"],
            capture_state=raw["capture_state"],
            error=raw["error"],
            next_attempt_at=raw["next_attempt_at"],
            parts_done=raw["parts_done"],
            num_parts=raw["num_parts"],
            actions_done=tuple(raw["actions_done"]),
            result_error=raw.get("result_error"),
            download_wanted=options.download_wanted,
            sighting=sighting["stage"] if sighting else None,
            sighting_reason=sighting["reason"] if sighting else None,
            held=(options.held or _none)(raw),
            paused=(options.paused or _none)(raw),
            blocked=(options.waiting or _none)(raw) or options.blocked,
            unlisted_since=raw.get("unlisted_since"),
            unlisted_confirmed_at=raw.get("unlisted_confirmed_at"),
        )
    )
    return {
        "path": raw["path"],
        "bytesize": raw["size"],
        "input_data_format": raw["input_data_format"],
        "name": raw["name"],
        "eid": raw["eid"],
        "sid": raw["sid"],
        "upload_state": raw["upload_state"],
        "parts_done": raw["parts_done"],
        "num_parts": raw["num_parts"],
        "capture_state": raw["capture_state"],
        "unlisted_since": raw.get("unlisted_since"),
        "unlisted_confirmed_at": raw.get("unlisted_confirmed_at"),
        "state_history": raw["state_history"],
        "error": raw["error"],
        "attempts": raw["attempts"],
        "next_attempt_at": raw["next_attempt_at"],
        "result_paths": raw["result_paths"],
        "updated_at": _latest(raw["updated_at"], sighting),
        "phase": phase,
        "reason": reason,
        # Filled by frame counting and budgets when they are journaled; null until then.
        "frames": raw.get("frames"),
        "duration_seconds": raw.get("duration_seconds"),
        "estimated_cost": raw.get("estimated_cost"),
        "result_error": raw.get("result_error"),
        # Results (README "Results"): every file grouped by profile, previews, the viewer.
        "results_by_profile": raw["results_by_profile"],
        "preview_paths": raw["preview_paths"],
        "result_next_at": raw["result_next_at"],
        "viewer_url": raw["viewer_url"],
        "preflight": preflight_object(raw),
        # What Teleport did with the frames (metadata v2's camera list), null without one.
        "teleport_posed": teleport_posed_object(raw),
    }


def teleport_posed_object(raw: dict[str, Any]) -> dict[str, Any] | None:
    """`teleport_posed`: `posed`, `frames` (null when names could not be matched),
    `left_out` (names as in the input), `matched`, `kind`, and the `sentence` status shows."""
    if not raw.get("teleport_posed"):
        return None
    posed = TeleportPosed.from_json(json.loads(raw["teleport_posed"]))
    return {**posed.as_json(), "sentence": posed.sentence()}


def preflight_object(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The `preflight` object of a row: verdict, reasons, measures (each figure with the rule
    that judged it), figures, worst frames, when it was checked and approved; None until the
    file's current version was checked (or when pre-flight is off)."""
    report = raw.get("preflight_report")
    if not report or raw.get("preflight_fingerprint") != raw.get("fingerprint"):
        return None
    return {
        **json.loads(report),
        "checked_at": raw.get("preflight_checked_at"),
        "approved_at": raw.get("preflight_approved_at"),
    }


def _sighting_only(path: str, sighting: dict[str, Any]) -> dict[str, Any]:
    phase, reason = derive(
        PhaseFacts(sighting=sighting["stage"], sighting_reason=sighting["reason"])
    )
    return {
        "path": path,
        "bytesize": sighting["size"],
        "input_data_format": _format_of(path),
        "name": None,
        "eid": None,
        "sid": None,
        "upload_state": "pending",
        "parts_done": 0,
        "num_parts": None,
        "capture_state": None,
        "unlisted_since": None,
        "unlisted_confirmed_at": None,
        "state_history": [],
        "error": None,
        "attempts": 0,
        "next_attempt_at": None,
        "result_paths": [],
        "updated_at": sighting["updated_at"],
        "phase": phase,
        "reason": reason,
        "frames": None,
        "duration_seconds": None,
        "estimated_cost": None,
        "result_error": None,
        "results_by_profile": {},
        "preview_paths": [],
        "result_next_at": None,
        "viewer_url": None,
        "preflight": None,
        "teleport_posed": None,
        "incomplete_since": sighting["incomplete_since"],
    }


def _latest(updated_at: str, sighting: dict[str, Any] | None) -> str:
    if sighting and sighting["updated_at"] > updated_at:
        return str(sighting["updated_at"])
    return updated_at


def _format_of(path: str) -> str | None:
    fmt = FORMATS_BY_SUFFIX.get(PurePath(path).suffix.lower())
    return fmt.value if fmt is not None else None
