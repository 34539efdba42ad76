"""The `teleport-sync` command: thin commands over the library.

Exit codes: 0 ok, 1 failed work, 2 usage or configuration error. Errors are one clear line on
stderr; secrets never appear in them (messages pass through the redactor).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..api import ApiError, AuthenticationError, TransientError
from ..config import ConfigError, Settings, load_settings
from ..journal import JournalError
from ..journal.lock import JournalBusy, JournalUnwritable
from ..logging import REDACTOR, configure_logging

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
    def __init__(self, config_path: Path | None, verbosity: int = 0) -> None:
        self.config_path = config_path
        # -v: INFO, -vv: DEBUG, whatever [log] level says (as rclone's -v).
        self.verbosity = verbosity
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            if self._settings.api.client_secret is not None:
                REDACTOR.add_secret(
                    self._settings.api.client_secret.get_secret_value(), min_length=4
                )
            if self.verbosity:
                level = "DEBUG" if self.verbosity > 1 else "INFO"
                self._settings.log.level = level  # type: ignore[assignment]
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
@click.option(
    "-v",
    "--verbose",
    "verbosity",
    count=True,
    help="Log more: -v at INFO, -vv at DEBUG (whatever [log] level says).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbosity: int) -> None:
    """Turn a folder into a Teleport Gaussian-splatting pipeline.

    Drop a .zip of photos or an .mp4 into a watched folder; teleport-sync uploads it, follows the
    capture until it is READY or FAILED, and downloads the finished model.
    """
    ctx.obj = AppContext(config_path, verbosity)


def config_source(settings: Settings) -> str:
    if settings.source_path is not None:
        return str(settings.source_path)
    return (
        "no config file found (looked for --config, $TELEPORT_SYNC_CONFIG, "
        "$XDG_CONFIG_HOME/teleport-sync/config.toml, /etc/teleport-sync/config.toml); "
        "using the environment only"
    )


@contextmanager
def single_writer(advice: str) -> Iterator[None]:
    """Refuse (exit 2) when another process writes the journal, saying what to do instead."""
    try:
        yield
    except JournalBusy as exc:
        fail(f"{exc}: {advice}", EXIT_USAGE)
