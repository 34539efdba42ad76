"""The `teleport-sync` command: thin commands over the library.

Exit codes: 0 ok, 1 failed work, 2 usage or configuration error. Errors are one clear line on
stderr; secrets never appear in them (messages pass through the redactor).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .api import ApiError, AuthenticationError, TransientError
from .config import ConfigError, Settings, load_settings
from .journal import JournalError
from .lock import JournalBusy, JournalUnwritable
from .logging import REDACTOR, configure_logging
from .retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {escape(REDACTOR.redact(message))}", highlight=False)
    sys.exit(code)


def reports_errors(func: F) -> F:
    """Turn our exceptions into one line on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except JournalUnwritable as exc:
            fail(str(exc), EXIT_USAGE)
        except JournalError as exc:
            fail(str(exc), EXIT_FAILED)
        except AuthenticationError as exc:
            fail(str(exc), EXIT_FAILED)
        except TransientError as exc:
            fail(f"{exc} (gave up after retries; is the API reachable?)", EXIT_FAILED)
        except ApiError as exc:
            fail(str(exc), EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


class AppContext:
    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            if self._settings.api.client_secret is not None:
                REDACTOR.add_secret(
                    self._settings.api.client_secret.get_secret_value(), min_length=4
                )
            configure_logging(self._settings.log.level, self._settings.log.format)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="teleport-sync")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (else $TELEPORT_SYNC_CONFIG, $XDG_CONFIG_HOME/teleport-sync/config.toml, "
    "/etc/teleport-sync/config.toml).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Turn a folder into a Teleport Gaussian-splatting pipeline.

    Drop a .zip of photos or an .mp4 into a watched folder; teleport-sync uploads it, follows the
    capture until it is READY or FAILED, and downloads the finished model.
    """
    ctx.obj = AppContext(config_path)


# -- captures ---------------------------------------------------------------------------------


@main.group()
def captures() -> None:
    """List, rename and delete the account's captures."""


@captures.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@reports_errors
def captures_list(app: AppContext, as_json: bool) -> None:
    """Every capture of the account."""
    from .compose import client_from_settings

    with client_from_settings(app.settings) as client:
        items = list(client.iter_captures())
    if as_json:
        click.echo(json.dumps([c.model_dump(mode="json") for c in items], indent=2))
        return
    table = Table("eid", "name", "state", "created", "sid")
    for c in sorted(items, key=lambda c: c.created, reverse=True):
        table.add_row(c.eid, c.name, c.state, c.created.isoformat(timespec="seconds"), c.sid or "")
    stdout.print(table)
    stdout.print(f"{len(items)} capture(s)")


@captures.command("rename")
@click.argument("eid")
@click.argument("name")
@pass_app
@reports_errors
def captures_rename(app: AppContext, eid: str, name: str) -> None:
    """Give capture EID a new NAME."""
    from .compose import client_from_settings

    with client_from_settings(app.settings) as client:
        capture = client.rename_capture(eid, name)
    click.echo(f"renamed {capture.eid} to {capture.name!r}")


@captures.command("delete")
@click.argument("eid")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts; asked only on a terminal).")
@pass_app
@reports_errors
def captures_delete(app: AppContext, eid: str, yes: bool) -> None:
    """Delete capture EID from the account (its model files too); the journal records it."""
    from .compose import open_journal

    settings = app.settings
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete capture {eid} and its models from the account?", abort=True)
    from .compose import client_from_settings

    with client_from_settings(settings) as client:
        client.delete_capture(eid)
    paths: list[str] = []
    if settings.journal.path.exists():
        with open_journal(settings) as journal:
            paths = journal.mark_capture_deleted(eid)
    click.echo(f"deleted {eid}" + (f" (of {', '.join(paths)})" if paths else ""))


# -- config -------------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@pass_app
@reports_errors
def config_check(app: AppContext) -> None:
    """Validate the config, the secret's source and permissions, then get a token from the API."""
    settings = app.settings
    click.echo(f"config file:   {_config_source(settings)}")
    click.echo(f"client id:     {settings.api.client_id or '(not set)'}")
    click.echo(f"client secret: from {settings.secret_source or '(not set)'}")
    click.echo(f"api:           {settings.api.base_url}")
    click.echo(f"token from:    {settings.api.auth_url}")
    click.echo(f"journal:       {settings.journal.path}")
    if settings.web.listen:
        # Read now, so a loose or empty token_file is refused here (exit 2), not at start.
        guarded = " (token required)" if settings.web.token_value() else ""
        click.echo(f"web console:   http://{settings.web.listen}/{guarded}")
    if settings.webhooks.listen:
        where = f"{settings.webhooks.listen}{settings.webhooks.path}"
        click.echo(f"webhooks:      {where} (secret from {settings.webhook_secret_source})")
    for index, target in enumerate(settings.notify):
        from .events.outbox import target_label

        click.echo(f"notify:        {target_label(index, target)}: {', '.join(target.events)}")
    problems = []
    for path in settings.watch.paths:
        state = "ok" if path.is_dir() else "MISSING"
        click.echo(f"watch:         {path} ({state})")
        if not path.is_dir():
            problems.append(f"[watch] paths: {path} is not a directory")
    # A check should answer in seconds, not ride out a long outage like the daemon does.
    quick = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=1.0, max_retry_after=5.0)
    from .compose import client_from_settings

    with client_from_settings(settings, policy=quick) as client:
        # Listing one capture needs a token first: both the token endpoint and the API answer.
        try:
            client.list_captures(limit=1)
        except AuthenticationError as exc:
            # Refused credentials are a config error (DESIGN §1: exit 2), not failed work.
            source = settings.secret_source or "(not set)"
            fail(f"{exc}; the secret used came from {source}", EXIT_USAGE)
    click.echo("api access:    ok (token issued, captures listed)")
    if problems:
        fail("; ".join(problems), EXIT_USAGE)


# -- notifications --------------------------------------------------------------------------------


@main.group("notify")
def notify_group() -> None:
    """Outgoing notifications ([[notify]] targets)."""


@notify_group.command("test")
@pass_app
@reports_errors
def notify_test(app: AppContext) -> None:
    """Send a test event to every [[notify]] target; exit 1 if any fails, saying which."""
    import httpx

    from .events.outbox import post, target_label
    from .events.payloads import trial

    settings = app.settings
    if not settings.notify:
        fail("no [[notify]] targets configured; see config.example.toml", EXIT_USAGE)
    event = trial()
    failed = []
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        for index, target in enumerate(settings.notify):
            sent = post(http, target, event)
            label = target_label(index, target)
            click.echo(f"{label}: {'delivered' if sent.ok else 'FAILED'} ({sent.detail})")
            if not sent.ok:
                failed.append(f"{label}: {sent.detail}")
    if failed:
        fail("the test event was not delivered to " + "; ".join(failed))
    click.echo(f"test event {event.event_id} delivered to {len(settings.notify)} target(s)")


# -- emulator -----------------------------------------------------------------------------------


def _set_knobs(config: Any, knobs: tuple[str, ...]) -> None:
    """`NAME=VALUE` pairs onto the emulator's config, each VALUE read as its knob's type."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(config) if not f.name.startswith("_")}
    for knob in knobs:
        name, _, text = knob.partition("=")
        if name not in fields or not _:
            fail(f"--knob {knob!r}: expected NAME=VALUE, NAME one of: {', '.join(fields)}", 2)
        current = getattr(config, name)
        try:
            if isinstance(current, bool):
                value: Any = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int | float):
                value = type(current)(text)
            else:
                value = None if text.lower() in ("", "none", "null") else text
        except ValueError:
            fail(f"--knob {name}: {text!r} is not a {type(current).__name__}", 2)
        setattr(config, name, value)


def _require_emulator_extra() -> None:
    from .emulator import missing_modules

    missing = missing_modules()
    if missing:
        fail(
            f"this command needs the emulator's packages ({', '.join(missing)} missing); "
            "install them with: pip install 'teleport-sync[emulator]'",
            EXIT_USAGE,
        )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, help="API port.")
@click.option("--s3-port", default=0, help="Part-storage port (default: any free port).")
@click.option("--client-id", default="demo-client", show_default=True)
@click.option("--client-secret", default="demo-secret-change-me", show_default=True)
@click.option("--chunk-size-mib", default=8.0, show_default=True, help="Part size (>= 5).")
@click.option("--token-ttl", default=3600.0, show_default=True, help="Token lifetime, seconds.")
@click.option("--url-ttl", default=900.0, show_default=True, help="Upload URL lifetime, seconds.")
@click.option("--processing-delay", default=3.0, show_default=True, help="Upload to READY, s.")
@click.option("--api-5xx-rate", default=0.0, help="Fraction of API calls answered 500.")
@click.option("--api-503-rate", default=0.0, help="Fraction answered 503 + Retry-After.")
@click.option("--put-5xx-rate", default=0.0, help="Fraction of part PUTs answered 500.")
@click.option("--put-reset-rate", default=0.0, help="Fraction of part PUTs reset mid-body.")
@click.option("--expired-url-rate", default=0.0, help="Fraction of upload URLs already expired.")
@click.option(
    "--models-shape",
    type=click.Choice(["array", "object"]),
    default="array",
    show_default=True,
    help="Metadata `models`: an array (the reference) or an object keyed by profile.",
)
@click.option("--seed", type=int, default=None, help="Seed the fault dice, to replay a run.")
@click.option(
    "--knob",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any other knob of EmulatorConfig (repeatable), e.g. put_delay_seconds=0.5.",
)
@click.option("--webhook-url", default=None, help="Send signed webhooks here on READY/ERROR.")
@click.option(
    "--webhook-secret", default="demo-webhook-secret", show_default=True, help="Signs webhooks."
)
def emulator(**options: Any) -> None:
    """Run the bundled local Teleport API (no account needed) until Ctrl-C.

    Every knob of `emulator/faults.py`'s EmulatorConfig can be set with --knob NAME=VALUE
    (e.g. --knob put_delay_seconds=0.5 for slow part PUTs, --knob clock_offset_seconds=3600),
    or while it runs: curl -X POST URL/_emulator/config -d '{"put_delay_seconds": 0.5}'.
    """
    _require_emulator_extra()
    from .config import is_loopback_host
    from .emulator.faults import MIB, EmulatorConfig
    from .emulator.server import EmulatorServer

    if not is_loopback_host(options["host"]):
        fail("the emulator listens on loopback only (127.0.0.1, ::1 or localhost)", EXIT_USAGE)
    if options["chunk_size_mib"] < 5:
        fail("--chunk-size-mib must be at least 5 (S3's smallest part)", EXIT_USAGE)
    config = EmulatorConfig(
        client_id=options["client_id"],
        client_secret=options["client_secret"],
        chunk_size=int(options["chunk_size_mib"] * MIB),
        token_ttl_seconds=options["token_ttl"],
        url_ttl_seconds=options["url_ttl"],
        processing_delay_seconds=options["processing_delay"],
        api_5xx_rate=options["api_5xx_rate"],
        api_503_retry_after_rate=options["api_503_rate"],
        put_5xx_rate=options["put_5xx_rate"],
        put_reset_rate=options["put_reset_rate"],
        expired_url_rate=options["expired_url_rate"],
        metadata_models_shape=options["models_shape"],
        seed=options["seed"],
        webhook_url=options["webhook_url"],
        webhook_secret=options["webhook_secret"],
    )
    _set_knobs(config, options["knob"])
    try:
        server = EmulatorServer(
            config, host=options["host"], port=options["port"], s3_port=options["s3_port"]
        )
    except OSError as exc:
        fail(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror}", EXIT_USAGE)
    server.start()
    click.echo(f"Teleport emulator on {server.url} (part storage on {server.storage.endpoint})")
    click.echo("Point teleport-sync at it with:\n")
    click.echo("[api]")
    click.echo(f'base_url = "{server.url}"')
    click.echo(f'auth_url = "{server.token_url}"')
    click.echo(f'client_id = "{config.client_id}"')
    click.echo(f'client_secret = "{config.client_secret}"\n')
    click.echo("Ctrl-C stops it.")
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# -- upload and status --------------------------------------------------------------------------


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders expand to the .zip and .mp4 files below them."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in (".zip", ".mp4")))
        else:
            out.append(path)
    return out


def _intake_refusal(path: Path, settings: Settings) -> str | None:
    """Why the daemon would not take `path` now (its ignore rules, format and completeness
    checks), in the daemon's words; None when it would. Nothing is created for a refused file."""
    from .inputs import InputProblem, check_complete, input_format_for
    from .watcher import ignore_reason

    path = path.absolute()
    root = next((r for r in settings.watch.paths if path.is_relative_to(r)), path.parent)
    ignored = ignore_reason(path, root, settings.watch)
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
        return f"{path}: {completeness.reason}; it looks unfinished: wait for the copy to end"
    return f"{path}: {completeness.reason}"


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Upload again even if already uploaded unchanged.")
@click.option("--follow", is_flag=True, help="Then wait for READY/FAILED and download the models.")
@click.option("-v", "--verbose", is_flag=True, help="Log at [log] level (default: warnings only).")
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

    from .compose import components
    from .engine import Stopped
    from .progress import RichProgress

    settings = _with_bwlimit(app.settings, bwlimit)
    if not verbose and settings.log.level in ("DEBUG", "INFO"):
        # The progress bars say what INFO lines would; keep the screen for them.
        configure_logging("WARNING", settings.log.format)
    files = _expand(paths)
    if not files:
        fail("no .zip or .mp4 files found in the given paths", EXIT_USAGE)
    stop = threading.Event()
    try:
        with (
            _writer(
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
    from .engine import Paused, UploadFailed
    from .inputs import InputProblem

    results: list[tuple[Path, str, str, int | None]] = []
    for index, path in enumerate(files, start=1):
        progress.announce(path, index, len(files))
        refusal = _intake_refusal(path, parts.settings)
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
    if any(eid for _, _, eid, _ in results) and not follow:
        click.echo(
            "The captures are processing on the server (typically some minutes). Follow them "
            "with `teleport-sync status`; fetch a model with `teleport-sync download EID` once "
            "it is READY, or next time use `upload --follow` to wait and download."
        )
    unfinished = any(what in ("failed", "waiting") for _, what, _, _ in results)
    return EXIT_FAILED if unfinished else EXIT_OK


def _follow_uploads(parts: Any, results: list[tuple[Path, str, str, int | None]], stop: Any) -> int:
    from .follow import follow

    ids = [file_id for _, _, _, file_id in results if file_id is not None]
    click.echo(f"waiting for {len(ids)} capture(s) to be READY or FAILED...")

    def said(record: Any) -> None:
        click.echo(f"{Path(record.path).name}: {record.capture_state or 'waiting'}")

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
        for model in record.result_paths:
            click.echo(f"{record.path}: model {model}")
    return code


def _phase_choice() -> click.Choice:
    from .phases import PHASES

    return click.Choice(PHASES)


def _with_bwlimit(settings: Settings, bwlimit: str | None) -> Settings:
    """`settings` with `upload --bwlimit` in place of `[upload] bwlimit`."""
    if bwlimit is None:
        return settings
    from .limits import LimitError, parse_bwlimit

    try:
        parse_bwlimit(bwlimit)
    except LimitError as exc:
        fail(f"--bwlimit: {exc}", EXIT_USAGE)
    return settings.model_copy(
        update={"upload": settings.upload.model_copy(update={"bwlimit": bwlimit})}
    )


def _admit(parts: Any, path: Path, force: bool) -> str | None:
    """Pause and budget checks before a one-shot upload: None, or why the file waits."""
    from .inputs import capture_name, identify, input_format_for

    absolute = path.absolute()  # as the uploader journals it
    name = capture_name(parts.settings.upload.name_template, absolute)
    record = parts.journal.register(
        str(absolute), identify(absolute), input_format_for(absolute).value, name
    )
    return parts.control.admit(record, force=force)


def _control_paths(paths: tuple[Path, ...]) -> list[str]:
    from .control import PAUSE_ALL, normalise

    return [normalise(p) for p in paths] or [PAUSE_ALL]


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def pause(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Start no new parts (of everything, or of these files and folders) until `resume`.

    Parts in flight finish and stay acknowledged. Kept in the journal: survives restarts, and
    a running daemon notices within about two seconds.
    """
    from .compose import open_journal

    targets = _control_paths(paths)
    with open_journal(app.settings) as journal:
        journal.set_paused(targets, True)
    click.echo("paused: " + ("everything" if paths == () else ", ".join(targets)))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def resume(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Undo `pause` (everything, or these files and folders); only missing parts are sent."""
    from .compose import open_journal
    from .control import PAUSE_ALL, paused_by

    targets = _control_paths(paths)
    with open_journal(app.settings) as journal:
        journal.set_paused(targets, False)
        still = {paused_by(journal.paused_paths(), t) for t in targets} - {None}
    click.echo("resumed: " + ("everything" if paths == () else ", ".join(targets)))
    for entry in sorted(e for e in still if e is not None):
        what = "everything" if entry == PAUSE_ALL else entry
        stderr.print(f"still paused by a pause of {what}: resume that to go on", highlight=False)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_app
@reports_errors
def approve(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Release files (or the files below folders) held by a [budget] limit or a lost journal."""
    from .compose import open_journal
    from .control import approve as approve_paths
    from .control import normalise

    with open_journal(app.settings) as journal:
        approved, not_held = approve_paths(journal, [normalise(p) for p in paths])
    for path in approved:
        click.echo(f"approved: {path}")
    if not_held:
        fail(f"{'; '.join(not_held)} (see: teleport-sync status)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON array.")
@click.option("--phase", "phases", multiple=True, type=_phase_choice(), help="Only these phases.")
@click.option("--since", help="Only rows changed since: 2026-11-28, 2026-11-28T10:00, 12h, 7d.")
@click.option("--path", "path_filter", help="Only files at or below this path, or matching a glob.")
@pass_app
@reports_errors
def status(
    app: AppContext,
    as_json: bool,
    phases: tuple[str, ...],
    since: str | None,
    path_filter: str | None,
) -> None:
    """What the journal knows: one row per file, from its first event on."""
    from .statusview import filter_rows, status_table

    settings = app.settings
    when = _parse_when(since, "--since") if since else None
    rows = filter_rows(_status_rows(settings), phases=phases, since=when, path=path_filter)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    stdout.print(status_table(rows))
    _print_viewers(rows)
    filtered = " (filtered)" if phases or since or path_filter else ""
    click.echo(f"{len(rows)} file(s){filtered} in {settings.journal.path}")
    click.echo(f"config: {_config_source(settings)}")


def _status_rows(settings: Settings) -> list[dict[str, Any]]:
    from .compose import open_journal
    from .health import report_options
    from .report import status_rows

    if not settings.journal.path.exists():
        return []
    with open_journal(settings) as journal:
        options = report_options(
            journal, download_wanted=settings.results.download, bwlimit=settings.upload.bwlimit
        )
        return status_rows(journal, options)


def _parse_when(text: str, option: str) -> Any:
    from .statusview import parse_when

    try:
        return parse_when(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


@main.command()
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
    from .compose import open_journal
    from .statusview import path_matches

    settings = app.settings
    if bool(paths) == bool(before):
        fail("give either PATH... or --before DATE (see: teleport-sync forget --help)", EXIT_USAGE)
    when = _parse_when(before, "--before") if before else None
    rows = _status_rows(settings)
    chosen = [
        row
        for row in rows
        if (when is not None and datetime.fromisoformat(row["updated_at"]) < when)
        or any(path_matches(row["path"], str(p)) for p in paths)
    ]
    if not chosen:
        click.echo("no row matches; `teleport-sync status` lists what the journal knows")
        return
    kept, drop = _forgettable(settings, chosen, force)
    if drop:
        with open_journal(settings) as journal:
            dropped = journal.forget_paths(drop)
    else:
        dropped = 0
    click.echo(f"forgot {dropped} row(s)")
    if kept:
        click.echo(f"kept {len(kept)} (use --force to drop them too):")
        for line in kept:
            click.echo(f"  {line}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON object.")
@pass_app
@reports_errors
def health(app: AppContext, as_json: bool) -> None:
    """Is the daemon running, does authentication work, which folders are watched.

    Exit 0 when healthy, 1 when not (for monitoring scripts).
    """
    from .compose import open_journal
    from .folders import watch_roots
    from .health import health_report, report_options

    settings = app.settings
    roots = watch_roots(settings)
    bwlimit = settings.upload.bwlimit
    if settings.journal.path.exists():
        with open_journal(settings) as journal:
            options = report_options(
                journal, download_wanted=settings.results.download, bwlimit=settings.upload.bwlimit
            )
            report = health_report(journal, roots, options, bwlimit=bwlimit)
    else:
        report = health_report(None, roots, bwlimit=bwlimit)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_health(report, settings)
    sys.exit(EXIT_OK if report["ok"] else EXIT_FAILED)


def _print_health(report: dict[str, Any], settings: Settings) -> None:
    daemon, auth = report["daemon"], report["auth"]
    click.echo(f"config:  {_config_source(settings)}")
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
        if root.get("polled"):
            how += f" (polled: {root.get('filesystem')} is a network file system)"
        click.echo(f"watch:   {root['path']}: {how}")
    counts = ", ".join(f"{n} {phase}" for phase, n in report["counts"].items()) or "none"
    click.echo(f"files:   {counts}")
    if "bwlimit" in report:
        click.echo(f"upload:  bandwidth limit now {report['bwlimit']['limit']}")
    if report.get("paused"):
        click.echo(f"paused:  {', '.join(report['paused'])} (teleport-sync resume)")
    if discards := report.get("captures_to_delete"):
        last = next((d["last_error"] for d in reversed(discards) if d["last_error"]), None)
        click.echo(
            f"cleanup: {len(discards)} unfinished capture(s) still to delete from the account"
            + (f" (last error: {last})" if last else "")
        )
    click.echo("healthy" if report["ok"] else "UNHEALTHY")


def _forgettable(
    settings: Settings, rows: list[dict[str, Any]], force: bool
) -> tuple[list[str], list[str]]:
    """(lines saying what is kept and why, the real paths to drop). Rows show their paths
    escaped (`journal.shown_path`); the journal maps them back to the names on disk."""
    from .compose import open_journal
    from .journal import shown_path
    from .statusview import is_finished

    with open_journal(settings) as journal:
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


def _config_source(settings: Settings) -> str:
    if settings.source_path is not None:
        return str(settings.source_path)
    return (
        "no config file found (looked for --config, $TELEPORT_SYNC_CONFIG, "
        "$XDG_CONFIG_HOME/teleport-sync/config.toml, /etc/teleport-sync/config.toml); "
        "using the environment only"
    )


def _print_viewers(rows: list[dict[str, Any]]) -> None:
    """Web viewer links of finished captures, one per line, below the table (long URLs)."""
    for row in rows:
        if row.get("viewer_url"):
            stdout.print(escape(f"viewer of {Path(row['path']).name}: {row['viewer_url']}"))


@main.command()
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
    from .actions import model_options
    from .results import FileAccess, WouldOverwrite, download_capture

    settings = app.settings
    wanted = list(profiles) or settings.results.profiles
    options = model_options(settings.results)
    if quality:
        options = dataclasses.replace(options, quality=quality)
    access = FileAccess(out_dir, mode=settings.results.mode, group=settings.results.group)
    from .compose import client_from_settings

    with client_from_settings(settings) as client:
        try:
            plan = download_capture(
                client, eid, wanted, out_dir, options, force=force, access=access
            )
        except WouldOverwrite as exc:
            fail(str(exc))
    for item in plan.files:
        click.echo(f"{item.profile}\t{item.target} ({item.model.size} bytes)")
    if plan.missing:
        fail(f"capture {eid} has no models for profiles {', '.join(plan.missing)}")


@contextmanager
def _writer(advice: str) -> Iterator[None]:
    """Refuse (exit 2) when another process writes the journal, saying what to do instead."""
    try:
        yield
    except JournalBusy as exc:
        fail(f"{exc}: {advice}", EXIT_USAGE)


# -- the daemon and the demo ----------------------------------------------------------------------


@main.command()
@click.option(
    "--upload-existing",
    is_flag=True,
    help="Upload files already in the watch folders even if the journal is new to them "
    "(else they are held: they may be on the account already).",
)
@pass_app
@reports_errors
def run(app: AppContext, upload_existing: bool) -> None:
    """The daemon, in the foreground, until SIGTERM or SIGINT."""
    from .daemon import Daemon
    from .journal import JournalError

    settings = app.settings
    if not settings.watch.paths:
        fail(
            f"nothing to watch: set [watch] paths (config: {_config_source(settings)})", EXIT_USAGE
        )
    daemon = Daemon(settings, upload_existing=upload_existing)
    daemon.install_signal_handlers()
    try:
        with _writer("stop that daemon first, or give this one its own [journal] path"):
            code = daemon.run()
    except JournalError as exc:
        fail(str(exc), EXIT_USAGE)
    sys.exit(code)


@main.command()
@click.option("--timeout", default=180.0, show_default=True, help="Give up after this many s.")
def demo(timeout: float) -> None:
    """The whole loop on the bundled emulator, in a temp folder: for a first look."""
    _require_emulator_extra()
    from .demo import run_demo

    sys.exit(run_demo(stdout, timeout=timeout))
