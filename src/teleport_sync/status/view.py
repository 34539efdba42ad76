"""`status` for people: its dates (`--since`), and a table that reads well in 80 columns.

Every value is put in as plain `Text`, never as markup: a reason such as "Check [api] client_id"
prints as it is. Errors that begin with the file's path lose that prefix (the path is already the
row's first line). Ids are never folded: people copy them into other commands. Which rows a
filter keeps: `status.filters`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Column, Table
from rich.text import Text

from ..logging import printable
from .phases import FAILED_STATES

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PHASE_STYLE = {"done": "green", "failed": "red", "rejected": "red", "held": "yellow"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`2026-11-28`, `2026-11-28T10:00`, or a duration ago: `90m`, `12h`, `7d`, `2w` (UTC)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date; use e.g. 2026-11-28, 2026-11-28T10:00, 12h or 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def is_finished(row: dict[str, Any]) -> bool:
    """Nothing more will happen to this row: done, rejected, or failed on the server."""
    if row["phase"] in ("done", "rejected"):
        return True
    return row["phase"] == "failed" and (row["capture_state"] or "").upper() in FAILED_STATES


def without_path(message: str | None, path: str) -> str | None:
    """The sentence without a leading `<path>: ` (the table shows the path already)."""
    if message and message.startswith(f"{path}: "):
        return message[len(path) + 2 :]
    return message


def status_table(rows: list[dict[str, Any]]) -> Table:
    """One row per file: the path with its reason, id and error below it; the phase beside."""
    table = Table(
        Column("file", overflow="fold", ratio=1), Column("phase", no_wrap=True), show_lines=True
    )
    for row in rows:
        cell = Text(printable(row["path"]))  # a file name may hold escapes: shown, not obeyed
        reason = without_path(row["reason"], row["path"])
        error = without_path(row["error"], row["path"])
        if reason:
            cell.append(f"\n{reason}", style="dim")
        if error and error not in (reason or ""):
            cell.append(f"\nerror: {error}", style="red")
        if row["result_error"] and row["result_error"] not in (reason or ""):
            cell.append(f"\ndownload: {row['result_error']}", style="red")
        preflight = row.get("preflight") or {}
        if preflight.get("verdict") == "warn" and preflight.get("reasons"):
            # A held file's reason already says it; a warned one was uploaded: say why here.
            cell.append(f"\npre-flight warns: {'; '.join(preflight['reasons'])}", style="yellow")
        posed = row.get("teleport_posed") or {}
        if posed.get("sentence"):  # what Teleport did with the frames (metadata v2)
            style = "yellow" if posed.get("left_out") else "green"
            cell.append(f"\n{posed['sentence']}", style=style)
        if row["eid"]:
            cell.append(f"\ncapture {row['eid']}", style="cyan")
        phase = Text(row["phase"], style=_PHASE_STYLE.get(row["phase"], ""))
        if row["phase"] == "uploading" and row["num_parts"]:
            phase.append(f" {row['parts_done']}/{row['num_parts']}")
        table.add_row(cell, phase)
    return table
