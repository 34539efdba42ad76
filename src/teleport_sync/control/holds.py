"""Why a file waits: paused by `pause` (everything, or a path at or above it), held by
pre-flight or by a budget, in the words `status` shows; and `approve`, which releases holds.

Everything is kept in the journal, so it survives restarts and works whether the daemon runs or
not: `pause`, `resume` and `approve` write it and bump a generation number, which a running
daemon watches (see `gate.Control.start_watching`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..commands import command
from ..journal import Journal
from ..journal.states import is_lost_journal_hold

PAUSE_ALL = "*"


def normalise(path: Path | str) -> str:
    """A path as the journal keeps it: absolute, not resolved (symlinks stay as given)."""
    return os.path.abspath(path)


def paused_by(paused: list[str], path: str) -> str | None:
    """The `pause` entry that covers `path` (itself, a folder above it, or "*"), or None."""
    for entry in paused:
        if entry == PAUSE_ALL or path == entry or path.startswith(entry.rstrip("/") + "/"):
            return entry
    return None


def pause_reason(journal: Journal, path: str) -> str | None:
    """Why `path` starts no new part (the `phase: paused` sentence), or None."""
    return _pause_sentence(paused_by(journal.paused_paths(), path))


def _pause_sentence(entry: str | None) -> str | None:
    if entry is None:
        return None
    if entry == PAUSE_ALL:
        return "all uploads are paused (teleport-sync pause); run: teleport-sync resume"
    return f"paused by: {command('pause', entry)}; run: {command('resume', entry)}"


def is_paused(journal: Journal, path: str) -> bool:
    return pause_reason(journal, path) is not None


def hold_reason(journal: Journal, file_id: int, path: str) -> str | None:
    """Why pre-flight or a budget holds the file at `path` (the `phase: held` sentence), or
    None."""
    return _hold_sentence({**journal.control_facts(file_id), "path": path})


def preflight_holds(row: dict[str, Any]) -> bool:
    """Does the row's pre-flight result (for its current version) hold it?"""
    return (
        row.get("preflight_verdict") == "hold"
        and not row.get("preflight_approved_at")
        and row.get("preflight_fingerprint") == row.get("fingerprint")
    )


def preflight_sentence(summary: str | None, path: str) -> str:
    return (
        f"held by pre-flight: {summary or 'it broke a [preflight] rule'}; look at it "
        f"({command('check', path)}), then to upload it anyway run: {command('approve', path)}"
    )


def _hold_sentence(row: dict[str, Any]) -> str | None:
    path = str(row["path"])
    if preflight_holds(row):
        return preflight_sentence(row.get("preflight_summary"), path)
    if row.get("duplicate_reason") and not row.get("duplicate_approved_at"):
        return (
            f"held: {row['duplicate_reason']}; to upload it anyway run: {command('approve', path)}"
        )
    if row.get("held_reason") and not row.get("approved_at"):
        return f"held: {row['held_reason']}; run: {command('approve', path)}"
    return None


def report_hooks(
    journal: Journal,
) -> tuple[Callable[[dict[str, Any]], str | None], Callable[[dict[str, Any]], str | None]]:
    """(held, paused): the reasons `report` shows for raw journal rows (one query for all)."""
    paused = journal.paused_paths()
    return _hold_sentence, lambda row: _pause_sentence(paused_by(paused, row["path"]))


def approve(journal: Journal, paths: list[str]) -> tuple[list[str], list[str]]:
    """Release held files at or below `paths` (by pre-flight, a budget, or because the journal
    was new to their folder): (approved paths, sentences for what was not released)."""
    from ..watch.lostjournal import release  # lostjournal needs the watcher; most callers do not

    records = journal.all_files()
    approved, not_held = [], []
    for target in paths:
        matched = [r for r in records if paused_by([target], r.path) is not None]
        held = [r for r in matched if hold_reason(journal, r.id, r.path) is not None]
        for record in held:
            journal.approve(record.id)
            approved.append(record.path)
        lost = [r for r in matched if is_lost_journal_hold(r.upload_state, r.error)]
        for record in lost:
            problem = release(journal, record)
            if problem is None:
                approved.append(record.path)
            else:
                not_held.append(f"not released: {problem}")
        if not held and not lost:
            not_held.append(f"nothing held at: {target}")
    return approved, not_held
