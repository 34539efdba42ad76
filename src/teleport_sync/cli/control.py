"""Operator control: `pause`, `resume`, `approve` and `forget`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..config import Settings
from ..journal import Journal, shown, shown_path
from ..logging import printable
from .app import (
    EXIT_USAGE,
    AppContext,
    fail,
    main,
    pass_app,
    reports_errors,
    stderr,
)
from .status import parse_when_option, status_rows_of

BACKSLASH = "\\"


def _control_paths(paths: tuple[Path, ...]) -> list[str]:
    from ..control import PAUSE_ALL, normalise

    return [normalise(p) for p in paths] or [PAUSE_ALL]


@main.command(short_help="Start no new parts until resume.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def pause(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Start no new parts (of everything, or of these files and folders) until `resume`.

    Parts in flight finish and stay acknowledged. Kept in the journal: survives restarts, and
    a running daemon notices within about two seconds.
    """
    from ..daemon.compose import open_journal

    targets = _control_paths(paths)
    with open_journal(app.settings) as journal:
        journal.set_paused(targets, True)
    click.echo("paused: " + ("everything" if paths == () else ", ".join(targets)))


@main.command(short_help="Go on after pause.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def resume(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Undo `pause` (everything, or these files and folders, with the pauses of files and
    folders below them); only missing parts are sent."""
    from ..control import PAUSE_ALL, paused_by
    from ..daemon.compose import open_journal

    targets = _control_paths(paths)
    with open_journal(app.settings) as journal:
        before = journal.paused_paths()
        # A folder resumes what was paused below it too ("resume the inbox" means its files).
        below = [p for p in before if p != PAUSE_ALL and any(_below(p, t) for t in targets)]
        lifted = [p for p in dict.fromkeys([*targets, *below]) if p in before]
        journal.set_paused(targets + below, False)
        still = {paused_by(journal.paused_paths(), t) for t in targets} - {None}
    if paths == ():
        click.echo("resumed: everything")
    elif lifted:
        click.echo("resumed: " + ", ".join(lifted))
    not_paused = [t for t in targets if t not in before and not any(_below(p, t) for p in below)]
    if not_paused and not still:
        stderr.print(f"not paused: {', '.join(not_paused)}", highlight=False)
    for entry in sorted(e for e in still if e is not None):
        what = "everything" if entry == PAUSE_ALL else entry
        stderr.print(f"still paused by a pause of {what}: resume that to go on", highlight=False)


def _below(path: str, folder: str) -> bool:
    return path != folder and Path(path).is_relative_to(folder)


@main.command(short_help="Release held files.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def approve(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Release files (or the files below folders) held by pre-flight, a [budget] limit or a
    lost journal. A pre-flight hold is released for that version of the file: it is not
    checked again (a changed file is)."""
    from ..control import approve as approve_paths
    from ..control import normalise
    from ..daemon.compose import open_journal

    with open_journal(app.settings) as journal:
        approved, not_held = approve_paths(journal, [normalise(p) for p in paths])
    # Names shown as `status` shows them: escapes and bytes that are not UTF-8 as text.
    for path in approved:
        click.echo(f"approved: {printable(shown_path(str(path)))}")
    if not_held:
        fail(f"{shown(printable('; '.join(not_held)))} (see: teleport-sync status)")


@main.command(short_help="Drop finished rows from the journal.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--before", help="Rows last changed before: 2026-11-01, 30d, ...")
@click.option("--force", is_flag=True, help="Also unfinished rows, and files still being watched.")
@pass_app
@reports_errors
def forget(app: AppContext, paths: tuple[Path, ...], before: str | None, force: bool) -> None:
    """Drop finished rows from the journal: these files (or folders), or all older than a date.

    A file still in a watch folder is kept unless --force: forgotten, it would look new at the
    next scan and be uploaded again.
    """
    from ..status.filters import RowFilter

    settings = app.settings
    if bool(paths) == bool(before):
        fail("give either PATH... or --before DATE (see: teleport-sync forget --help)", EXIT_USAGE)
    when = parse_when_option(before, "--before") if before else None
    if when is not None:
        rows = _rows_for_before(settings)
        chosen = [row for row in rows if datetime.fromisoformat(row["updated_at"]) < when]
    else:  # only the finished rows at these paths are built, not a year of them
        chosen = status_rows_of(settings, kept=RowFilter(paths=tuple(map(str, paths))))[0]
    if not chosen:
        click.echo("no row matches; `teleport-sync status` lists what the journal knows")
        return
    # One opening (not the daemon's composition: its imports are a sixth of a second).
    with Journal(settings.journal.path) as journal:
        kept, drop = _forgettable(journal, settings, chosen, force)
        dropped = journal.forget_paths(drop) if drop else 0
    click.echo(f"forgot {dropped} row(s)")
    if kept:
        click.echo(f"kept {len(kept)} (use --force to drop them too):")
        for line in kept:
            click.echo(f"  {line}")


def _rows_for_before(settings: Settings) -> list[dict[str, Any]]:
    """The rows in hand as `status` shows them, and the finished ones (most of a year's
    journal) as only what `forget` reads of them, straight from SQL."""
    rows = status_rows_of(settings, finished=0)[0]
    if not settings.journal.path.exists():
        return rows
    with Journal(settings.journal.path) as journal:
        done = journal.finished_rows(download_wanted=settings.results.download)
    return rows + [
        {
            "path": shown_path(row.path),
            "phase": "done",
            "capture_state": row.capture_state,
            "updated_at": row.updated_at,
        }
        for row in done
    ]


def _forgettable(
    journal: Journal, settings: Settings, rows: list[dict[str, Any]], force: bool
) -> tuple[list[str], list[str]]:
    """(lines saying what is kept and why, the real paths to drop). Rows show their paths
    escaped (`journal.shown_path`); the journal maps them back to the names on disk."""
    from ..status.view import is_finished

    real: dict[str, str] = {}
    # `shown_path` changes a name only by writing a backslash (doubled, or `\xNN`): a row shown
    # without one is its name on disk, and a year of names need not be read for it.
    if any(BACKSLASH in row["path"] for row in rows):
        real = {shown_path(path): path for path in journal.known_paths()}
    watched = [p.absolute() for p in settings.watch.paths]
    kept: list[str] = []
    drop: list[str] = []
    for row in rows:
        path = Path(real.get(row["path"], row["path"]))
        still_watched = path.exists() and any(path.is_relative_to(root) for root in watched)
        if not force and (not is_finished(row) or still_watched):
            why = "still in a watch folder" if is_finished(row) else f"{row['phase']}"
            kept.append(f"{row['path']} ({why})")
        else:
            drop.append(str(path))
    return kept, drop
