"""The `teleport-sync` command: thin commands over the library.

Exit codes: 0 ok, 1 failed work, 2 usage or configuration error. Errors are one clear line on
stderr; secrets never appear in them (messages pass through the redactor).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from . import __version__
from .api import ApiError, AuthenticationError, TransientError, client_from_settings
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
    with client_from_settings(app.settings) as client:
        capture = client.rename_capture(eid, name)
    click.echo(f"renamed {capture.eid} to {capture.name!r}")


@captures.command("delete")
@click.argument("eid")
@pass_app
@reports_errors
def captures_delete(app: AppContext, eid: str) -> None:
    """Delete capture EID from the account."""
    with client_from_settings(app.settings) as client:
        client.delete_capture(eid)
    click.echo(f"deleted {eid}")


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
    click.echo(f"config file:   {settings.source_path or '(none; environment only)'}")
    click.echo(f"client id:     {settings.api.client_id or '(not set)'}")
    click.echo(f"client secret: from {settings.secret_source or '(not set)'}")
    click.echo(f"api:           {settings.api.base_url}")
    click.echo(f"token from:    {settings.api.auth_url}")
    click.echo(f"journal:       {settings.journal.path}")
    if settings.web.listen:
        # Read now, so a loose or empty token_file is refused here (exit 2), not at start.
        guarded = " (token required)" if settings.web.token_value() else ""
        click.echo(f"web console:   http://{settings.web.listen}/{guarded}")
    problems = []
    for path in settings.watch.paths:
        state = "ok" if path.is_dir() else "MISSING"
        click.echo(f"watch:         {path} ({state})")
        if not path.is_dir():
            problems.append(f"[watch] paths: {path} is not a directory")
    # A check should answer in seconds, not ride out a long outage like the daemon does.
    quick = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=1.0, max_retry_after=5.0)
    with client_from_settings(settings, policy=quick) as client:
        # Listing one capture needs a token first: both the token endpoint and the API answer.
        client.list_captures(limit=1)
    click.echo("api access:    ok (token issued, captures listed)")
    if problems:
        fail("; ".join(problems), EXIT_USAGE)


# -- emulator -----------------------------------------------------------------------------------


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
@click.option("--seed", type=int, default=None, help="Seed the fault dice, to replay a run.")
def emulator(**options: Any) -> None:
    """Run the bundled local Teleport API (no account needed) until Ctrl-C."""
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
        seed=options["seed"],
    )
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


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Upload again even if already uploaded unchanged.")
@click.option("-v", "--verbose", is_flag=True, help="Log at [log] level (default: warnings only).")
@pass_app
@reports_errors
def upload(app: AppContext, paths: tuple[Path, ...], force: bool, verbose: bool) -> None:
    """Upload files now, with progress bars; re-running resumes where it stopped."""
    from .compose import components
    from .engine import UploadFailed
    from .inputs import InputProblem
    from .progress import RichProgress

    settings = app.settings
    if not verbose and settings.log.level in ("DEBUG", "INFO"):
        # The progress bars say what INFO lines would; keep the screen for them.
        configure_logging("WARNING", settings.log.format)
    files = _expand(paths)
    if not files:
        fail("no .zip or .mp4 files found in the given paths", EXIT_USAGE)
    results: list[tuple[Path, str, str]] = []
    failures = 0
    with (
        _writer(
            "the daemon does this work: drop the files into a watched folder and follow them "
            "with `teleport-sync status`, or stop it (systemctl stop teleport-sync) and run "
            "upload again"
        ),
        RichProgress(stderr) as progress,
        components(settings, progress=progress) as parts,
    ):
        for path in files:
            try:
                result = parts.uploader.upload(path, force=force)
            except (InputProblem, UploadFailed) as exc:
                failures += 1
                progress.bars.console.print(
                    f"[bold red]error:[/] {escape(REDACTOR.redact(str(exc)))}", highlight=False
                )
                results.append((path, "failed", ""))
                continue
            what = "already uploaded" if result.already_uploaded else "uploaded"
            results.append((path, what, result.eid))
    table = Table("file", "result", "eid")
    for path, what, eid in results:
        style = "red" if what == "failed" else "green"
        table.add_row(str(path), f"[{style}]{what}[/]", eid)
    stdout.print(table)
    if failures:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON array.")
@pass_app
@reports_errors
def status(app: AppContext, as_json: bool) -> None:
    """What the journal knows: one row per file."""
    from .compose import open_journal
    from .report import ReportOptions, status_rows

    settings = app.settings
    if not settings.journal.path.exists():
        rows: list[dict[str, Any]] = []
    else:
        with open_journal(settings) as journal:
            rows = status_rows(journal, ReportOptions(download_wanted=settings.results.download))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # Full paths, ids and errors, folded rather than cut: people copy them into other commands.
    table = Table(
        Column("file", overflow="fold"),
        "upload",
        "parts",
        "capture",
        Column("eid", overflow="fold"),
        Column("error", overflow="fold"),
    )
    for row in rows:
        parts = f"{row['parts_done']}/{row['num_parts']}" if row["num_parts"] else ""
        table.add_row(
            row["path"],
            row["upload_state"],
            parts,
            row["capture_state"] or "",
            row["eid"] or "",
            row["error"] or "",
        )
    stdout.print(table)
    stdout.print(f"{len(rows)} file(s) in {settings.journal.path}")


@main.command()
@click.argument("eid")
@click.option("--profile", "profiles", multiple=True, help="Model profile (repeatable).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=".")
@pass_app
@reports_errors
def download(app: AppContext, eid: str, profiles: tuple[str, ...], out_dir: Path) -> None:
    """Fetch a finished capture's model files."""
    settings = app.settings
    wanted = list(profiles) or settings.results.profiles
    with client_from_settings(settings) as client:
        capture = client.find_capture(eid)
        if capture is None:
            fail(f"no capture {eid} in this account (see: teleport-sync captures list)")
        if capture.state != "READY" or not capture.sid:
            fail(f"capture {eid} is {capture.state}, not READY; nothing to download yet")
        metadata = client.metadata(capture.sid, profiles=wanted, quality=settings.results.quality)
        if not metadata.models:
            fail(f"capture {eid} has no models for profiles {', '.join(wanted)}")
        stem = Path(capture.name).stem or eid
        for index, model in enumerate(metadata.models):
            suffix = Path(model.url.split("?", 1)[0]).suffix or ".bin"
            extra = f"-{index}" if len(metadata.models) > 1 else ""
            target = out_dir / f"{stem}{extra}{suffix}"
            size = client.download(model.url, target, expected_size=model.size)
            click.echo(f"{target} ({size} bytes)")


@contextmanager
def _writer(advice: str) -> Iterator[None]:
    """Refuse (exit 2) when another process writes the journal, saying what to do instead."""
    try:
        yield
    except JournalBusy as exc:
        fail(f"{exc}: {advice}", EXIT_USAGE)


# -- the daemon and the demo ----------------------------------------------------------------------


@main.command()
@pass_app
@reports_errors
def run(app: AppContext) -> None:
    """The daemon, in the foreground, until SIGTERM or SIGINT."""
    from .daemon import Daemon
    from .journal import JournalError

    settings = app.settings
    if not settings.watch.paths:
        fail("nothing to watch: set [watch] paths in the config file", EXIT_USAGE)
    daemon = Daemon(settings)
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
