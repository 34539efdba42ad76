"""`run`: the daemon, in the foreground, until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

import click

from ..journal import JournalError
from .app import (
    EXIT_USAGE,
    AppContext,
    config_source,
    fail,
    main,
    pass_app,
    reports_errors,
    single_writer,
)


@main.command(short_help="Run the daemon in the foreground.")
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
    from ..daemon import Daemon

    settings = app.settings
    if not settings.watch.paths:
        fail(f"nothing to watch: set [watch] paths (config: {config_source(settings)})", EXIT_USAGE)
    daemon = Daemon(settings, upload_existing=upload_existing)
    daemon.install_signal_handlers()
    try:
        with single_writer("stop that daemon first, or give this one its own [journal] path"):
            code = daemon.run()
    except JournalError as exc:
        fail(str(exc), EXIT_USAGE)
    sys.exit(code)
