"""The daemon's signals: SIGTERM and SIGINT stop it, SIGHUP reads the config again.

A reload is only requested from the signal handler; the main loop applies it at its next turn,
outside the handler (which may interrupt any line of the main thread). What may change live is
decided by `reload.merge_for_reload`; this module hands the result to the running parts.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from ..config import ConfigError, Settings
from ..control import budget_from
from ..logging import configure_logging, get_logger
from ..watch.folders import capture_plan, effective, watch_roots
from .compose import FolderActions
from .reload import merge_for_reload

if TYPE_CHECKING:
    from ..api import TeleportClient
    from ..control import Control
    from ..engine import Uploader
    from ..events.emitter import EventHub
    from ..journal import Journal
    from ..preflight.gate import PreflightGate
    from ..results.poller import Poller
    from ..status.metrics import Metrics
    from ..watch.watcher import Watcher
    from .consolehost import ConsoleHost
    from .finishing import Finishing
    from .keeper import HealthKeeper

log = get_logger("teleport_sync.daemon")


def install_signal_handlers(stop: threading.Event, request_reload: Callable[[], None]) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    def reload(signum: int, frame: FrameType | None) -> None:
        request_reload()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    # systemd's `reload` (ExecReload=/bin/kill -HUP $MAINPID): read the config again.
    signal.signal(signal.SIGHUP, reload)


class RunningDaemon(Protocol):
    """The running parts a reload hands the new settings to (`root.Daemon` is one).

    Named here, below the daemon, so the daemon can import this module without a circle."""

    settings: Settings
    client: TeleportClient
    journal: Journal
    console: ConsoleHost
    watcher: Watcher
    keeper: HealthKeeper
    finishing: Finishing
    poller: Poller
    events: EventHub
    uploader: Uploader
    control: Control
    preflight: PreflightGate
    metrics: Metrics
    actions_retry_seconds: float

    def roots_moved(self, roots: list[Path]) -> None:
        """The watch roots changed: claim the new ones, say which are watched."""


class Reloader:
    """A requested reload, applied by the main loop (`apply_if_requested`)."""

    def __init__(self, load: Callable[[], Settings]) -> None:
        self._load = load
        self._requested = threading.Event()

    def request(self) -> None:
        self._requested.set()

    def apply_if_requested(self, daemon: RunningDaemon) -> None:
        if self._requested.is_set():
            self._requested.clear()
            self.apply(daemon)

    def apply(self, daemon: RunningDaemon) -> None:
        """Apply a changed config without dropping work; a bad one is refused, the old kept."""
        try:
            new = self._load()
        except ConfigError as exc:
            log.error("config not reloaded; the running config stays in effect", error=str(exc))
            return
        new, later = merge_for_reload(daemon.settings, new)
        daemon.settings = new
        configure_logging(new.log.level, new.log.format)
        daemon.console.reload(new.web)
        daemon.watcher.settings = new.watch
        daemon.watcher.set_roots(watch_roots(new))
        daemon.roots_moved(watch_roots(new))
        daemon.finishing.actions = FolderActions(
            new, daemon.client, daemon.journal, retry_base_seconds=daemon.actions_retry_seconds
        )
        daemon.poller.interval = new.poll.interval_seconds
        daemon.client.listing.reconfigure(new.poll.full_walk_seconds, new.poll.clock_skew_seconds)
        daemon.events.reload(new)
        # Names and training parameters per folder and sidecar, from the new settings.
        daemon.uploader.plan_for = lambda path: capture_plan(new, path)
        # Pre-flight's rules per folder; results already journaled stand for their versions.
        daemon.preflight.settings_for = lambda path: effective(new, path).preflight
        daemon.keeper.preflight_changed(*daemon.preflight.state())
        limiter = daemon.control.reconfigure(budget_from(new.budget), new.upload.bwlimit)
        daemon.control.duplicates = new.upload.duplicates
        daemon.uploader.ctx.throttle = limiter.consume if limiter is not None else None
        daemon.metrics.watch_bwlimit(limiter)
        log.info(
            "config reloaded",
            config=str(new.source_path or "(no config file; environment only)"),
            watching=[str(p) for p in daemon.watcher.roots],
            needs_restart=later or None,
        )
