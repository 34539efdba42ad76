"""Setting up: `config check`, `notify test`, the bundled `emulator` and the `demo`."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from ..api import AuthenticationError
from ..retry import RetryPolicy
from .app import (
    EXIT_USAGE,
    AppContext,
    config_source,
    fail,
    main,
    pass_app,
    reports_errors,
    stdout,
)


@main.group("config", short_help="Check or print the configuration.")
def config_group() -> None:
    """Check the configuration, or print the example one."""


@config_group.command("check", short_help="Validate the config and reach the API.")
@pass_app
@reports_errors
def config_check(app: AppContext) -> None:
    """Validate the config, the secret's source and permissions, then get a token from the API."""
    settings = app.settings
    click.echo(f"config file:   {config_source(settings)}")
    click.echo(f"client id:     {settings.api.client_id or '(not set)'}")
    source = f"from {settings.secret_source}" if settings.secret_source else "(not set)"
    click.echo(f"client secret: {source}")
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
        from ..events.outbox import target_label

        click.echo(f"notify:        {target_label(index, target)}: {', '.join(target.events)}")
    problems = []
    if not settings.watch.paths:
        # Valid for `upload`, but `run` refuses it: say so here, not only at the first start.
        click.echo("watch:         (none: `run` needs [watch] paths; `upload PATH` works without)")
    for path in settings.watch.paths:
        state = "ok" if path.is_dir() else "MISSING"
        click.echo(f"watch:         {path} ({state})")
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist (yet)"
            problems.append(
                f"[watch] paths: {path} {what}; the daemon starts anyway and watches it as soon "
                "as it is a folder (a share mounted late), as `teleport-sync health` shows"
            )
    # A check should answer in seconds, not ride out a long outage like the daemon does.
    quick = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=1.0, max_retry_after=5.0)
    from ..daemon.compose import client_from_settings

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


@main.group("notify", short_help="Test the [[notify]] targets.")
def notify_group() -> None:
    """Outgoing notifications ([[notify]] targets)."""


@config_group.command("example", short_help="Print the example config, every key documented.")
def config_example() -> None:
    """Print the example configuration: every key, documented, with its default.

    Save it and edit it: `teleport-sync config example > ~/.config/teleport-sync/config.toml`.
    """
    from importlib.resources import files

    click.echo(files("teleport_sync").joinpath("config.example.toml").read_text("utf-8"), nl=False)


@notify_group.command("test", short_help="Send a test event to every [[notify]] target.")
@pass_app
@reports_errors
def notify_test(app: AppContext) -> None:
    """Send a test event to every [[notify]] target; exit 1 if any fails, saying which."""
    import httpx

    from ..events.outbox import post, target_label
    from ..events.payloads import trial

    settings = app.settings
    if not settings.notify:
        fail(
            "no [[notify]] targets configured; `teleport-sync config example` shows how",
            EXIT_USAGE,
        )
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


def _set_knobs(config: Any, knobs: tuple[str, ...]) -> None:
    """`NAME=VALUE` pairs onto the emulator's config, each VALUE read as its knob's type."""

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
    from ..emulator import missing_modules

    missing = missing_modules()
    if missing:
        fail(
            f"this command needs the emulator's packages ({', '.join(missing)} missing); "
            "install them with: pip install 'teleport-sync[emulator]'",
            EXIT_USAGE,
        )


@main.command(short_help="Run the local Teleport API (no account).")
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
    from ..config import is_loopback_host
    from ..emulator.faults import MIB, EmulatorConfig
    from ..emulator.server import EmulatorServer

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


@main.command(short_help="See the whole loop on the emulator.")
@click.option("--timeout", default=180.0, show_default=True, help="Give up after this many s.")
@click.option(
    "--keep",
    is_flag=True,
    help="Stay up after the loop (web console, emulator) until Ctrl-C or SIGTERM, even off a "
    "terminal, and keep the temporary folder afterwards.",
)
def demo(timeout: float, keep: bool) -> None:
    """The whole loop on the bundled emulator, in a temporary folder: for a first look.

    On a terminal it stays up after the loop, with its web console, until Ctrl-C. The folder is
    removed at the end unless --keep (or the demo failed: then it is kept, and said).
    """
    _require_emulator_extra()
    from .demo import run_demo

    sys.exit(run_demo(stdout, timeout=timeout, keep=keep))
