"""`upload PATH...` (and `--follow`): the daemon's checks, the engine, progress bars, results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..logging import REDACTOR, configure_logging
from .app import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AppContext,
    fail,
    main,
    pass_app,
    reports_errors,
    single_writer,
    stderr,
    stdout,
)


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders expand to the inputs below them (.zip, .mp4 and .mov: what
    `input_format_for` takes, as the daemon does)."""
    from ..inputs import FORMATS_BY_SUFFIX

    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS_BY_SUFFIX))
        else:
            out.append(path)
    return out


def _intake_refusal(path: Path, settings: Settings) -> str | None:
    """Why the daemon would not take `path` now (its ignore rules, format and completeness
    checks), in the daemon's words; None when it would. Nothing is created for a refused file."""
    from ..daemon.intake import not_taken_reason
    from ..inputs import InputProblem, check_complete, input_format_for
    from ..watch.candidates import NOT_INCLUDED, ignore_reason

    path = path.absolute()
    root = next((r for r in settings.watch.paths if path.is_relative_to(r)), path.parent)
    ignored = ignore_reason(path, root, settings.watch)
    if ignored == NOT_INCLUDED:  # the daemon does not ignore it: its row says this sentence
        return not_taken_reason(path, settings.watch.include)
    if ignored is not None:
        return f"{path}: {ignored} (the daemon ignores it)"
    try:
        input_format_for(path)
        completeness = check_complete(path)
    except InputProblem as exc:
        return str(exc)
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if completeness.state == "complete":
        return None
    if completeness.state == "incomplete":
        return unfinished_or_broken(path, completeness.reason, settings.watch.settle_seconds)
    return f"{path}: {completeness.reason}"


def _claimed_elsewhere(path: Path, parts: Any) -> str | None:
    """A file in a folder another live journal watches is that journal's to upload (one
    capture per file): why not here, or None."""
    import time

    from ..watch.claim import looks_live, owner_above
    from ..watch.lostjournal import journal_id

    found = owner_above(path.absolute())
    if found is None or found[1].journal_id == journal_id(parts.journal):
        return None
    folder, owner = found
    if not looks_live(owner, folder, time.time()):
        return None
    return (
        f"{path}: {folder} is watched by {owner.who()}, which uploads it; not uploaded here too "
        "(leave it to that daemon, or stop it first)"
    )


def unfinished_or_broken(path: Path, reason: str, settle_seconds: float) -> str:
    """An incomplete file given by name: still being written (changed in the last settle
    time), or, far more likely for a file someone names on the command line, broken."""
    import time

    from ..inputs import settled_reason

    idle = time.time() - path.stat().st_mtime
    if idle < max(settle_seconds, 2.0):
        return f"{path}: {reason}; it changed {idle:.0f} s ago: wait for the copy to end"
    return (
        f"{path}: {settled_reason(reason)}; it has not changed for {idle:.0f} s, so it is "
        "broken (cut short, or not a finished export): write or copy it again"
    )


@main.command(short_help="Upload files now, with progress bars.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Upload again even if already uploaded unchanged.")
@click.option("--follow", is_flag=True, help="Then wait for READY/FAILED and download the models.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log as the global -v does (default: warnings only)."
)
@click.option(
    "--bwlimit",
    help='Bandwidth limit for this run: "off", a rate ("10M") or a timetable, as [upload] bwlimit.',
)
@pass_app
@reports_errors
def upload(
    app: AppContext,
    paths: tuple[Path, ...],
    force: bool,
    follow: bool,
    verbose: bool,
    bwlimit: str | None,
) -> None:
    """Upload files now, with progress bars; re-running resumes where it stopped.

    Exit 0 when every file was uploaded (with --follow: is READY and its models are on disk),
    1 when any failed, 130 when interrupted (run the same command again to resume).
    """
    import threading

    from ..daemon.compose import components
    from ..engine import Stopped
    from .progress import RichProgress

    if verbose and not app.verbosity:
        app.verbosity = 1
    settings = _with_bwlimit(app.settings, bwlimit)
    if not app.verbosity and settings.log.level in ("DEBUG", "INFO"):
        # The progress bars say what INFO lines would; keep the screen for them.
        configure_logging("WARNING", settings.log.format)
    files = _expand(paths)
    if not files:
        fail("no .zip, .mp4 or .mov files found in the given paths", EXIT_USAGE)
    # A path that is not there is a typo, said as `check` says it (exit 2), before anything
    # is uploaded; a FIFO or a device is there, and gets its refusal in the daemon's words.
    missing = [str(p) for p in files if not p.exists() and not p.is_symlink()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", EXIT_USAGE)
    stop = threading.Event()
    try:
        with (
            single_writer(
                "the daemon does this work: drop the files into a watched folder and follow "
                "them with `teleport-sync status`, or stop it (systemctl stop teleport-sync) "
                "and run upload again"
            ),
            RichProgress(stderr) as progress,
            components(settings, progress=progress, stop=stop) as parts,
        ):
            results = _upload_each(parts, files, progress, force)
            progress.bars.stop()
            code = _report_uploads(results, follow)
            if follow and any(eid for _, _, eid, _ in results):
                code = max(code, _follow_uploads(parts, results, stop))
    except (KeyboardInterrupt, Stopped):  # Ctrl-C; the part threads see it as a stop
        stop.set()
        stderr.print(
            "interrupted: every acknowledged part is journaled; run the same command again to "
            "resume where it stopped",
            highlight=False,
            markup=False,
        )
        sys.exit(130)
    sys.exit(code)


def _upload_each(
    parts: Any, files: list[Path], progress: Any, force: bool
) -> list[tuple[Path, str, str, int | None]]:
    """Upload one file after the other: (path, what happened, eid, journal id) per file."""
    from ..engine import Paused, UploadFailed
    from ..inputs import InputProblem

    results: list[tuple[Path, str, str, int | None]] = []
    for index, path in enumerate(files, start=1):
        progress.announce(path, index, len(files))
        refusal = _intake_refusal(path, parts.settings) or _claimed_elsewhere(path, parts)
        if refusal is not None:
            progress.bars.console.print(f"[bold red]error:[/] {escape(refusal)}", highlight=False)
            results.append((path, "failed", "", None))
            continue
        try:
            waiting = _admit(parts, path, force)
            if waiting is not None:
                progress.bars.console.print(
                    f"[yellow]waiting:[/] {escape(f'{path}: {waiting}')}", highlight=False
                )
                results.append((path, "waiting", "", None))
                continue
            result = parts.uploader.upload(path, force=force)
        except Paused as exc:  # paused meanwhile, or the upload window closed
            progress.bars.console.print(f"[yellow]waiting:[/] {escape(str(exc))}", highlight=False)
            results.append((path, "waiting", "", None))
            continue
        except (InputProblem, UploadFailed) as exc:
            progress.bars.console.print(
                f"[bold red]error:[/] {escape(REDACTOR.redact(str(exc)))}", highlight=False
            )
            results.append((path, "failed", "", None))
            continue
        what = "already uploaded" if result.already_uploaded else "uploaded"
        results.append((path, what, result.eid, result.file_id))
    return results


def _report_uploads(results: list[tuple[Path, str, str, int | None]], follow: bool) -> int:
    from rich.text import Text

    table = Table("file", "result", "capture")
    for path, what, eid, _ in results:
        style = {"failed": "red", "waiting": "yellow"}.get(what, "green")
        table.add_row(Text(str(path)), Text(what, style=style), Text(eid))
    stdout.print(table)
    eids = [eid for _, _, eid, _ in results if eid]
    if eids and not follow:
        click.echo(
            "The captures are processing on the server (typically some minutes). Follow them "
            f"with `teleport-sync status`; fetch a model with `teleport-sync download {eids[0]}` "
            "once it is READY, or next time use `upload --follow` to wait and download."
        )
    unfinished = any(what in ("failed", "waiting") for _, what, _, _ in results)
    return EXIT_FAILED if unfinished else EXIT_OK


def _follow_uploads(parts: Any, results: list[tuple[Path, str, str, int | None]], stop: Any) -> int:
    from .follow import follow

    ids = [file_id for _, _, _, file_id in results if file_id is not None]
    click.echo(f"waiting for {len(ids)} capture(s) to be READY or FAILED...")

    import time

    since: dict[int, tuple[str, float]] = {}  # file id -> (state, when it was first seen)

    def said(record: Any) -> None:
        """Each capture's state as it changes, and how long it stayed in the one before."""
        state, now = record.capture_state or "waiting for the server", time.monotonic()
        before = since.get(record.id)
        after = f" (after {_took(now - before[1])} {before[0]})" if before else ""
        since[record.id] = (state, now)
        click.echo(f"{Path(record.path).name}: {state}{after}")

    records = follow(parts, ids, stop=stop, on_state=said)
    code = EXIT_OK
    for record in records:
        if (record.capture_state or "").upper() != "READY":
            code = EXIT_FAILED
            click.echo(f"{record.path}: {record.capture_state}: {record.error or 'no model'}")
            continue
        record = parts.journal.get(record.id)
        if not record.result_paths and parts.settings.results.download:
            code = EXIT_FAILED
            click.echo(f"{record.path}: READY, but the download failed (see teleport-sync status)")
        if record.result_dir:
            click.echo(f"{record.path}: results in {record.result_dir}")
        for model in record.result_paths:
            click.echo(f"{record.path}: model {model}")
    return code


def _took(seconds: float) -> str:
    """`4 s`, `2 min 5 s`: how long a capture stayed in a state, for `--follow`."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def _with_bwlimit(settings: Settings, bwlimit: str | None) -> Settings:
    """`settings` with `upload --bwlimit` in place of `[upload] bwlimit`."""
    if bwlimit is None:
        return settings
    from ..limits import LimitError, parse_bwlimit

    try:
        parse_bwlimit(bwlimit)
    except LimitError as exc:
        fail(f"--bwlimit: {exc}", EXIT_USAGE)
    return settings.model_copy(
        update={"upload": settings.upload.model_copy(update={"bwlimit": bwlimit})}
    )


def _admit(parts: Any, path: Path, force: bool) -> str | None:
    """Pause and budget checks before a one-shot upload: None, or why the file waits."""
    from ..inputs import capture_name, identify, input_format_for

    absolute = path.absolute()  # as the uploader journals it
    name = capture_name(parts.settings.upload.name_template, absolute)
    record = parts.journal.register(
        str(absolute), identify(absolute), input_format_for(absolute).value, name
    )
    return parts.control.admit(record, force=force)
