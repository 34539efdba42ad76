"""`status` and `health`: what the journal knows, and whether the daemon is well."""

from __future__ import annotations

import functools
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from ..config import Settings
from ..journal import Journal
from ..logging import printable
from .app import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AppContext,
    config_source,
    fail,
    main,
    pass_app,
    reports_errors,
    stdout,
)

if TYPE_CHECKING:
    from ..status.filters import RowFilter

# Finished rows the table shows by default (the most recently changed).
RECENT_FINISHED = 50


def _phase_choice() -> click.Choice:
    from ..status.phases import PHASES

    return click.Choice(PHASES)


@main.command(short_help="One row per file: phase and reason.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array, one object per file (for scripts)."
)
@click.option("--phase", "phases", multiple=True, type=_phase_choice(), help="Only these phases.")
@click.option("--since", help="Only rows changed since: 2026-11-28, 2026-11-28T10:00, 12h, 7d.")
@click.option("--path", "path_filter", help="Only files at or below this path, or matching a glob.")
@click.option(
    "--all",
    "every_row",
    is_flag=True,
    help=f"The table shows every finished file too (else the {RECENT_FINISHED} latest).",
)
@pass_app
@reports_errors
def status(
    app: AppContext,
    as_json: bool,
    phases: tuple[str, ...],
    since: str | None,
    path_filter: str | None,
    every_row: bool,
) -> None:
    """What the journal knows: one row per file, from its first event on."""
    from ..status.filters import RowFilter
    from ..status.view import status_table

    settings = app.settings
    if path_filter == "":  # an unset shell variable, most likely: not "everything", not "here"
        fail("--path is empty; give a file, a folder or a glob (e.g. --path 'scan_*')", EXIT_USAGE)
    when = parse_when_option(since, "--since") if since else None
    row_filter = RowFilter(phases, when, (path_filter,) if path_filter is not None else ())
    if as_json:
        _echo_json_lines(settings, row_filter)
        return
    # A year's finished rows make a table nobody reads: the latest few, and how many more
    # (of those the filter keeps).
    recent = None if every_row else RECENT_FINISHED
    rows, hidden, notes = status_rows_of(settings, finished=recent, notes=True, kept=row_filter)
    stdout.print(status_table(rows))
    _print_viewers(rows)
    for note in notes:
        click.echo(f"folder: {note}")
    shown = " (filtered)" if row_filter else ""
    click.echo(f"{len(rows)} file(s){shown} in {settings.journal.path}")
    if hidden:
        click.echo(f"{hidden} older finished file(s) not shown (`status --all` lists them)")
    click.echo(f"config: {config_source(settings)}")


def _echo_json_lines(settings: Settings, row_filter: RowFilter) -> None:
    """Every row the filter keeps, as `status_json_lines` renders them (a year of finished
    rows by SQLite)."""
    from ..status.health import report_options
    from ..status.report import status_json_lines

    if not settings.journal.path.exists():
        _write_json_array(iter(()))
        return
    with _open_reader(settings) as journal:
        options = report_options(
            journal, download_wanted=settings.results.download, bwlimit=settings.upload.bwlimit
        )
        _write_json_array(status_json_lines(journal, options, row_filter))


def _open_reader(settings: Settings) -> Journal:
    """The journal as `status` and `health` read it: they write nothing, so its structure is
    checked (`PRAGMA quick_check`, a third of the full check at 50,000 rows), and the daemon's
    composition (a tenth of a second of imports) is not loaded for it."""
    return Journal(settings.journal.path, quick_check=True)


def _write_json_array(lines: Iterator[str]) -> None:
    """The JSON array, one object per line (each `json.dumps` of a row), written as it goes,
    a thousand lines a write."""
    out = click.get_text_stream("stdout")
    out.write("[")
    separator = "\n"
    while chunk := list(itertools.islice(lines, 1000)):
        out.write(separator + ",\n".join(chunk))
        separator = ",\n"
    out.write("]\n" if separator == "\n" else "\n]\n")
    out.flush()


def status_rows_of(
    settings: Settings,
    *,
    finished: int | None = None,
    notes: bool = False,
    kept: RowFilter | None = None,
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The status rows `kept` keeps (with `finished` = n, only the n latest finished ones), how
    many finished rows it kept were left out, and (`notes`) the sentences about watch folders
    another journal owns or the daemon took over (`watch.claim`): one opening of the journal.
    A finished row the filter leaves out is never built (`status.report.finished_kept`)."""
    from ..status.filters import RowFilter
    from ..status.health import claim_notes, report_options
    from ..status.report import finished_kept, status_rows

    if not settings.journal.path.exists():
        return [], 0, []
    kept = kept or RowFilter()
    with _open_reader(settings) as journal, journal.snapshot():
        options = report_options(
            journal, download_wanted=settings.results.download, bwlimit=settings.upload.bwlimit
        )
        finished_ids = finished_kept(journal, options, kept)
        rows = kept.rows(
            status_rows(journal, options, finished=finished, finished_ids=finished_ids)
        )
        said = claim_notes(journal) if notes else []
        if finished is None:
            return rows, 0, said
        if finished_ids is None:
            total = journal.finished_count(download_wanted=options.download_wanted)
        else:
            total = len(finished_ids)
        return rows, max(0, total - finished), said


def parse_when_option(text: str, option: str) -> Any:
    from ..status.view import parse_when

    try:
        return parse_when(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


@main.command(short_help="Is the daemon well? Exit 0 if so.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@pass_app
@reports_errors
def health(app: AppContext, as_json: bool) -> None:
    """Is the daemon running, does authentication work, which folders are watched.

    Exit 0 when healthy, 1 when not (for monitoring scripts).
    """
    from ..status.health import health_report, report_options
    from ..watch.folders import watch_roots

    settings = app.settings
    roots = watch_roots(settings)
    bwlimit = settings.upload.bwlimit
    # Imports the decoders (a third of a second): only when no running daemon says.
    preflight = functools.partial(_preflight_here, settings)
    pose = _pose_here(settings)
    if settings.journal.path.exists():
        with _open_reader(settings) as journal:
            options = report_options(
                journal, download_wanted=settings.results.download, bwlimit=settings.upload.bwlimit
            )
            report = health_report(
                journal, roots, options, bwlimit=bwlimit, preflight=preflight, pose=pose
            )
    else:
        report = health_report(None, roots, bwlimit=bwlimit, preflight=preflight, pose=pose)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_health(report, settings)
    sys.exit(EXIT_OK if report["ok"] else EXIT_FAILED)


def _preflight_here(settings: Settings) -> dict[str, Any]:
    """Whether pre-flight would be on in this environment (when no daemon says): the config,
    then the extra's decoders (only looked for when the config wants them)."""
    if not settings.preflight.enabled:
        return {"enabled": False, "reason": "[preflight] enabled = false"}
    from ..preflight import load_decoders

    found = load_decoders()
    return {"enabled": found.ok, "reason": found.reason}


def _pose_here(settings: Settings) -> dict[str, Any]:
    """The pose check's mode (`[preflight] pose`) and, when it is wanted, whether pycolmap is
    installed here (looked for, not imported)."""
    mode = settings.preflight.pose if settings.preflight.enabled else "off"
    if mode == "off":
        return {"mode": "off", "installed": None, "reason": None}
    from ..preflight.pose.runner import pose_available

    missing = pose_available()
    return {"mode": mode, "installed": missing is None, "reason": missing}


def _print_health(report: dict[str, Any], settings: Settings) -> None:
    from ..control import PAUSE_ALL

    daemon, auth = report["daemon"], report["auth"]
    click.echo(f"config:  {config_source(settings)}")
    running = f"running (pid {daemon['pid']})" if daemon["running"] else "NOT RUNNING"
    click.echo(f"daemon:  {running}")
    if auth["ok"] is None:
        click.echo("auth:    not known (the daemon has not tried yet, or is not running)")
    elif auth["ok"]:
        click.echo(f"auth:    ok since {auth['since']}")
    else:
        click.echo(f"auth:    AUTHENTICATION FAILING since {auth['since']}: {auth['error']}")
    for root in report["roots"]:
        how = "watched" if root["watched"] else f"NOT WATCHED: {root['problem']}"
        if root.get("claimed_by"):
            how = f"NOT UPLOADED FROM HERE: {root['problem']}"
        if taken := root.get("taken_over_from"):
            how += (
                f" (taken over from journal {taken['journal_id']} on host {taken['host']}, "
                f"pid {taken['pid']}: its lease expired)"
            )
        if root.get("polled"):
            how += f" (polled: {root.get('filesystem')} is a network file system)"
        click.echo(f"watch:   {root['path']}: {how}")
    counts = ", ".join(f"{n} {phase}" for phase, n in report["counts"].items()) or "none"
    click.echo(f"files:   {counts}")
    if "bwlimit" in report:
        click.echo(f"upload:  bandwidth limit now {report['bwlimit']['limit']}")
    if report.get("paused"):
        # The journal's "*" (health --json keeps it) is `pause` without paths: say so.
        paused = ["everything" if p == PAUSE_ALL else p for p in report["paused"]]
        click.echo(f"paused:  {', '.join(paused)} (teleport-sync resume)")
    if preflight := report.get("preflight"):
        on = "on" if preflight["enabled"] else f"OFF: {preflight['reason']}"
        click.echo(f"checks:  pre-flight {on}")
    if (pose := report.get("pose")) and pose["mode"] != "off":
        state = "installed" if pose["installed"] else f"NOT RUN: {pose['reason']}"
        click.echo(f"checks:  pose check ({pose['mode']}) {state}")
    if discards := report.get("captures_to_delete"):
        last = next((d["last_error"] for d in reversed(discards) if d["last_error"]), None)
        click.echo(
            f"cleanup: {len(discards)} unfinished capture(s) still to delete from the account"
            + (f" (last error: {last})" if last else "")
        )
    click.echo("healthy" if report["ok"] else "UNHEALTHY")


def _print_viewers(rows: list[dict[str, Any]]) -> None:
    """Web viewer links of finished captures, one per line, below the table (long URLs)."""
    for row in rows:
        if row.get("viewer_url"):
            # As in the table: a file name may hold escapes and newlines, shown, not obeyed.
            name = printable(Path(row["path"]).name)
            stdout.print(escape(f"viewer of {name}: {row['viewer_url']}"))
