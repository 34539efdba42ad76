"""`captures list|rename|delete` and `download`: the account's captures and their models."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from ..inputs import InputProblem
from ..journal import Journal, StaleCapture
from ..logging import printable
from .app import (
    AppContext,
    fail,
    main,
    pass_app,
    reports_errors,
    stdout,
)


@main.group(short_help="List, rename and delete captures.")
def captures() -> None:
    """List, rename and delete the account's captures."""


@captures.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Only the first N the listing gives (the newest, on a live account): a year-old "
    "account holds thousands, and all of them cost a request per 100.",
)
@pass_app
@reports_errors
def captures_list(app: AppContext, as_json: bool, limit: int | None) -> None:
    """Every capture of the account (or the newest N with --limit)."""
    from ..daemon.compose import client_from_settings

    with client_from_settings(app.settings) as client:
        # islice stops the walk itself: no page past the one holding the Nth capture is asked.
        items = list(itertools.islice(client.iter_captures(), limit))
    if as_json:
        click.echo(json.dumps([c.model_dump(mode="json") for c in items], indent=2))
        return
    table = Table("eid", "name", "state", "created", "sid")
    for c in sorted(items, key=lambda c: c.created, reverse=True):
        # The account's text is data: no escape sequence, line break or [markup] of a name
        # (anyone with access to the account sets them) acts on the terminal.
        cells = (c.eid, c.name, c.state, c.created.isoformat(timespec="seconds"), c.sid or "")
        table.add_row(*(Text(printable(cell)) for cell in cells))
    stdout.print(table)
    stdout.print(f"{len(items)} capture(s)")


@captures.command("rename")
@click.argument("eid")
@click.argument("name")
@pass_app
@reports_errors
def captures_rename(app: AppContext, eid: str, name: str) -> None:
    """Give capture EID a new NAME."""
    from ..daemon.compose import client_from_settings

    with client_from_settings(app.settings) as client:
        capture = client.rename_capture(eid, name)
    click.echo(f"renamed {capture.eid} to {capture.name!r}")


@captures.command("delete", short_help="Delete capture EID and its models from the account.")
@click.argument("eid")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts; asked only on a terminal).")
@pass_app
@reports_errors
def captures_delete(app: AppContext, eid: str, yes: bool) -> None:
    """Delete capture EID from the account (its model files too); the journal records it."""
    from ..daemon.compose import open_journal

    settings = app.settings
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete capture {eid} and its models from the account?", abort=True)
    from ..daemon.compose import client_from_settings

    with client_from_settings(settings) as client:
        client.delete_capture(eid)
    paths: list[str] = []
    if settings.journal.path.exists():
        with open_journal(settings) as journal:
            _unless_replaced(journal, eid)
            paths = journal.mark_capture_deleted(eid)
    click.echo(f"deleted {eid}" + (f" (of {', '.join(paths)})" if paths else ""))


def _unless_replaced(journal: Journal, eid: str) -> None:
    """A file replaced since capture `eid` was made of it is a new version: its row starts
    over (to be uploaded anew) instead of recording the old capture's deletion on it."""
    from ..results.actions import version_on_disk

    record = journal.by_eid(eid)
    if record is None:
        return
    try:
        journal.confirm_version(
            record.id, eid, version_on_disk(Path(record.path)), "deleting its capture"
        )
    except (StaleCapture, InputProblem) as exc:
        click.echo(f"{record.path}: {exc}", err=True)


@main.command(short_help="Fetch a finished capture's models.")
@click.argument("eid")
@click.option("--profile", "profiles", multiple=True, help="Model profile (repeatable).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    help="Parent folder; files go to OUT/<capture name>/<profile>/ (default: the current one).",
)
@click.option("--quality", type=click.Choice(["sd", "hd"]), help="Default: [results] quality.")
@click.option("--force", is_flag=True, help="Replace model files that are already there.")
@pass_app
@reports_errors
def download(
    app: AppContext,
    eid: str,
    profiles: tuple[str, ...],
    out_dir: Path,
    quality: str | None,
    force: bool,
) -> None:
    """Fetch a finished capture's model files into OUT/<capture name>/<profile>/."""
    from ..results import FileAccess, WouldOverwrite, download_capture
    from ..results.actions import model_options

    settings = app.settings
    wanted = list(profiles) or settings.results.profiles
    options = model_options(settings.results)
    if quality:
        options = dataclasses.replace(options, quality=quality)
    access = FileAccess(out_dir, mode=settings.results.mode, group=settings.results.group)
    from ..daemon.compose import client_from_settings

    with client_from_settings(settings) as client:
        try:
            plan = download_capture(
                client, eid, wanted, out_dir, options, force=force, access=access
            )
        except WouldOverwrite as exc:
            fail(str(exc))
    for item in plan.files:
        click.echo(f"{item.profile}\t{item.target} ({item.target.stat().st_size} bytes)")
    if plan.cameras_url and plan.folder is not None:
        click.echo(f"cameras\t{plan.folder / 'cameras.json'}")
    if plan.missing:
        fail(f"capture {eid} has no models for profiles {', '.join(plan.missing)}")
