"""The daemon (`teleport-sync run`): the composition root that builds and wires the threads that
watch, upload, follow and fetch.

Threads of the daemon:
- the watcher's settle checker, which hands settled files to the intake (`intake.Intake`);
- `files_at_once` upload workers (`workers.Uploads`), fed by a queue of journal file ids
  (`queue.UploadQueue`; the journal, not the queue, is the truth: on start every unfinished
  file is queued again);
- the poller, which follows captures and triggers actions;
- the main thread: signals and reloads (`signals`), sd_notify, retries that came due, metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..api.authstate import AuthSnapshot
from ..config import Settings, load_settings
from ..control.holds import preflight_sentence
from ..events.emitter import EventHub
from ..journal import FileRecord, JournalError, PreflightRow
from ..logging import get_logger
from ..preflight.deps import Importer
from ..results.poller import FIRST_POLL_SECONDS, Poller
from ..status.metrics import Metrics, MetricsProgress
from ..status.report import ReportOptions
from ..timestamps import utc_in
from ..watch.claim import Change, with_claims
from ..watch.folders import effective, watch_roots
from ..watch.sightings import Sightings
from ..watch.watcher import Watcher
from .chores import Chores
from .compose import Components, FolderActions, components
from .consolehost import ConsoleHost
from .finishing import Finishing, viewer_url
from .folderclaims import FolderClaims
from .intake import Intake
from .keeper import HealthKeeper
from .queue import UploadQueue
from .sdnotify import SystemdNotifier
from .signals import Reloader
from .signals import install_signal_handlers as _install_signal_handlers
from .workers import RETRY_BASE_SECONDS, RETRY_MAX_SECONDS, Uploads, file_retry_policy

# What other modules import from here; the retry policy of a whole file now lives in `workers`
# and is re-exported, so imports of it from here keep working.
__all__ = [
    "ACTIONS_RETRY_SECONDS",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "ROOT_CHECK_SECONDS",
    "Daemon",
    "file_retry_policy",
    "start_console",
]

log = get_logger("teleport_sync.daemon")

# How often pending actions are looked at; a failed download's own backoff (actions.py) decides
# whether it is tried again then.
ACTIONS_RETRY_SECONDS = 30.0
# Watch roots are re-checked this often: a share mounted late is watched within this time.
ROOT_CHECK_SECONDS = 10.0


class Daemon:
    """`teleport-sync run`: watch, upload, follow, fetch; until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        notifier: SystemdNotifier | None = None,
        stop: threading.Event | None = None,
        actions_retry_seconds: float = ACTIONS_RETRY_SECONDS,
        upload_existing: bool = False,
        root_check_seconds: float = ROOT_CHECK_SECONDS,
        auth_backoff: tuple[float, float] = (30.0, 900.0),
        reload: Callable[[], Settings] | None = None,
        first_poll_seconds: float = FIRST_POLL_SECONDS,
        preflight_importer: Importer | None = None,
    ) -> None:
        self.settings = settings
        # How pre-flight's decoders are imported (tests make one fail: pre-flight is then off).
        self.preflight_importer = preflight_importer
        # True: files already in the roots are uploaded even when the journal is new to them.
        self.upload_existing = upload_existing
        self.stop = stop or threading.Event()
        self.notifier = notifier or SystemdNotifier()
        self.metrics = Metrics()
        self.progress = MetricsProgress(self.metrics)
        # The web console (`[web]`); a reload that changes it restarts it (signals.Reloader).
        self.console = ConsoleHost(lambda listen, token: start_console(self, listen, token))
        self.actions_retry_seconds = actions_retry_seconds
        self.root_check_seconds = root_check_seconds
        self.auth_backoff = auth_backoff
        # How soon after an upload its capture is first polled (`results.poller.PollSchedule`).
        self.first_poll_seconds = first_poll_seconds
        # Reads the config file again (SIGHUP); by default from where it was read first.
        self._reloader = Reloader(reload or (lambda: load_settings(settings.source_path)))
        self._file_retries = file_retry_policy()
        self.ready = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def web_url(self) -> str | None:
        return self.console.url

    def install_signal_handlers(self) -> None:
        _install_signal_handlers(self.stop, self.request_reload)

    def request_reload(self) -> None:
        """Read the config again at the main loop's next turn (within a few seconds)."""
        self._reloader.request()

    def run(self) -> int:
        with components(
            self.settings,
            progress=self.progress,
            stop=self.stop,
            on_retry=lambda what: self.metrics.retries.labels(what).inc(),
            schedule_retry=self._next_attempt,
            preflight_importer=self.preflight_importer,
            on_preflight=partial(_preflight_checked, self),
        ) as parts:
            self._build(parts)
            if self.settings.metrics.listen:
                self.metrics.serve(self.settings.metrics.listen)
            self.keeper.started()
            self.keeper.preflight_changed(*self.preflight.state())
            self.console.start(self.settings.web)
            try:
                # First: a port already taken is a configuration error, before any work starts.
                self.events.start(
                    self.finishing.on_terminal_soon,
                    verify=parts.client.find_capture,
                    on_unverified=self.poller.wake.set,
                )
                return self._run_threads()
            finally:
                self.console.stop()
                self.keeper.stopped()
                self.events.close()
                self.metrics.close()

    def _build(self, parts: Components) -> None:
        """The daemon's parts, wired to each other, around the client, journal and uploader."""
        settings = self.settings
        self.journal = parts.journal
        self.client = parts.client
        self.uploader = parts.uploader
        self.control = parts.control
        self.preflight = parts.preflight
        self.metrics.watch_bwlimit(parts.control.limiter)
        self.metrics.watch_journal_disk(Path(parts.journal.path).parent)
        self.metrics.watch_api(parts.client)
        self.keeper = HealthKeeper(
            parts.journal,
            parts.client,
            self.metrics,
            self.notifier,
            stop=self.stop,
            options=lambda: ReportOptions(download_wanted=self.settings.results.download),
            auth_backoff=self.auth_backoff,
        )
        self.poller = Poller(
            parts.client,
            parts.journal,
            interval_seconds=settings.poll.interval_seconds,
            on_terminal=lambda record: self.finishing.on_terminal(record),
            stop=self.stop,
            auth=self.keeper.auth,
            first_poll_seconds=self.first_poll_seconds,
        )
        self.events = EventHub(
            settings,
            parts.journal,
            stop=self.stop,
            registry=self.metrics.registry,
            viewer_url=partial(viewer_url, parts.client),
        )
        self.finishing = Finishing(
            parts.client,
            parts.journal,
            parts.uploader,
            FolderActions(
                settings, parts.client, parts.journal, retry_base_seconds=self.actions_retry_seconds
            ),
            self.events,
            report_status=self._report_status,
        )
        self.keeper.on_auth_change = partial(_auth_changed, self.events)
        self._build_pipeline(parts)

    def _build_pipeline(self, parts: Components) -> None:
        """A file's way in: sightings, the watcher, the intake, the queue and the upload workers."""
        settings = self.settings
        self.sightings = Sightings(
            parts.journal, settle_seconds=lambda: self.settings.watch.settle_seconds
        )
        self.queue = UploadQueue(parts.journal, self.metrics)
        self.intake = Intake(
            lambda: self.settings,
            parts.journal,
            self.sightings,
            self.events,
            enqueue=self.queue.enqueue,
            next_attempt=self._next_attempt,
            recheck_later=lambda path, root, delay: self.watcher.recheck_later(path, root, delay),
            closed_unchanged=lambda path, st: self.watcher.closed_unchanged(path, st),
        )
        self._known = parts.journal.quick_index()
        # One live journal per folder: which roots this daemon owns (`watch.claim`).
        changed = lambda: (self._roots_changed(), self.queue.enqueue_unfinished())  # noqa: E731
        self.claims = FolderClaims(
            parts.journal, lambda: self.settings, self.upload_existing, changed, parts.uploader
        )
        self.intake.held_by_claim = self.claims.hold_reason
        self.watcher = Watcher(
            # `[[watch.folder]]` paths are watched too, each with its own settle time.
            settings.watch.model_copy(update={"paths": watch_roots(settings)}),
            self.intake.take,
            settle_for=lambda path: effective(self.settings, path).settle_seconds,
            on_refused=self.intake.refused,
            on_noticed=self.sightings.noticed,
            on_gone=self.sightings.gone,
            is_known=lambda path, st: (
                self._known.get(str(path.absolute()))
                == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            ),
        )
        self.watcher.on_not_included = self.intake.not_included
        self.uploads = Uploads(
            self.queue,
            parts.journal,
            parts.uploader,
            parts.control,
            self.keeper,
            watcher=self.watcher,
            poller=self.poller,
            events=self.events,
            metrics=self.metrics,
            stop=self.stop,
            next_attempt=self._next_attempt,
            report_status=self._report_status,
            not_ours=self.claims.give_up,
        )

    def retry_now(self, file_id: int) -> None:
        """Queue a file at once (the web console's "retry now")."""
        self.queue.enqueue(file_id)

    def _run_threads(self) -> int:
        # Before any worker can start: which folders are this daemon's to upload from.
        claimed = self.claims.start()
        threads = self._start_threads()
        self.control.start_watching(self.stop, self.queue.enqueue_unfinished)  # before the queueing

        self.events.sweep()
        self._resume_known_work(claimed)
        self._start_watching()
        self.notifier.ready()
        self.ready.set()

        self._main_loop()
        _wind_down(self, threads)
        return 0

    def _start_threads(self) -> list[threading.Thread]:
        """The upload workers, the poller and the authentication probe, started."""
        self._worker_count = self.settings.upload.files_at_once
        threads = [
            threading.Thread(target=self.uploads.worker, name=f"upload-{i}", daemon=True)
            for i in range(self._worker_count)
        ]
        threads.append(threading.Thread(target=self.poller.run, name="poller", daemon=True))
        threads.append(threading.Thread(target=self.keeper.watch_auth, name="auth", daemon=True))
        threads.append(self.claims.thread(self.stop))
        for thread in threads:
            thread.start()
        return threads

    def _start_watching(self) -> None:
        """Watch the roots, and take what is already in them."""
        self.watcher.start()
        self._roots_changed()
        started = time.monotonic()
        found = self.watcher.scan()
        log.info(
            "watching",
            config=str(self.settings.source_path or "(no config file; environment only)"),
            paths=[r["path"] for r in self.watcher.root_statuses() if r["watched"]],
            not_watched=[r["path"] for r in self.watcher.root_statuses() if not r["watched"]],
            new_files=found,
            scan_seconds=round(time.monotonic() - started, 3),
        )

    def _main_loop(self) -> None:
        """The main thread's chores (`_upkeep`), until `stop` is set."""
        tick = min(self.root_check_seconds, self.notifier.watchdog_interval or 5.0)
        self._chores = Chores(
            {
                "actions": self.actions_retry_seconds,
                "roots": self.root_check_seconds,
                "rescan": self.settings.watch.rescan_seconds,
            }
        )
        while not self.stop.is_set():
            self.notifier.watchdog()
            try:
                self._upkeep()
            except JournalError as exc:
                log.error("journal unavailable; will keep trying", error=str(exc))
            except Exception:  # the main loop must outlive any one bad moment
                log.exception("unexpected error in the main loop")
            self.stop.wait(tick)

    def _resume_known_work(self, claimed: list[Change]) -> None:
        """Work the journal already knows: unfinished uploads, due retries, pending actions and
        renames; and the holds on files in folders another journal watches or watched (see
        `lostjournal`)."""
        self.claims.apply(claimed)
        self.queue.enqueue_unfinished()
        self.queue.enqueue_due_retries()
        self.finishing.retry_pending_actions()
        self.sightings.prune()
        self.finishing.finish_renames()

    def roots_moved(self, roots: list[Path]) -> None:
        """A reload changed the watch roots: new ones are claimed (or contended) at once."""
        self.claims.moved(roots)
        self._roots_changed()

    def _roots_changed(self) -> None:
        statuses = self.claims.claims.statuses()
        self.keeper.roots_changed(with_claims(self.watcher.root_statuses(), statuses))

    def _upkeep(self) -> None:
        """The main loop's chores: retries due, roots re-checked, rescans, reloads, reports."""
        self._reloader.apply_if_requested(self)
        if not self.keeper.auth.waiting():
            self.queue.enqueue_due_retries()
        self.queue.enqueue_delayed()
        if self._chores.due("roots", self.root_check_seconds) and self.watcher.check_roots():
            self._roots_changed()
        rescan = self.settings.watch.rescan_seconds
        if rescan and self._chores.due("rescan", rescan):
            self._known = self.journal.quick_index()
            found = self.watcher.scan()
            log.info("rescanned the watch folders", new_files=found)
        self._report_status()
        self.events.check_stuck()
        if self._chores.due("actions", self.actions_retry_seconds):
            self.finishing.retry_pending_actions()
            self.finishing.finish_renames()

    def _next_attempt(self, attempts: int) -> str:
        delay = self._file_retries.backoff(max(0, attempts - 1))
        return utc_in(delay)

    def _report_status(self) -> None:
        self.keeper.report_counts(waiting=self.queue.qsize())


def _wind_down(daemon: Daemon, threads: list[threading.Thread]) -> None:
    """Stop: no new work, parts in flight finish (for a while), the folders' claims let go."""
    daemon.notifier.stopping()
    log.info("stopping: finishing parts in flight")
    daemon.keeper.auth.failing.set()  # wakes the authentication probe
    daemon.watcher.stop()
    daemon.poller.wake.set()
    daemon.queue.stop_workers(daemon._worker_count)
    deadline = time.monotonic() + 8.0
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    daemon.claims.claims.release()
    log.info("stopped")


def _preflight_checked(
    daemon: Daemon, record: FileRecord, row: PreflightRow, seconds: float
) -> None:
    """A file version judged: counted, and announced when it is held."""
    daemon.metrics.preflight_checked(row.verdict, seconds)
    if row.holds:
        daemon.events.file_held(record, row, preflight_sentence(row.summary, record.path))


def _auth_changed(events: EventHub, snapshot: AuthSnapshot) -> None:
    """Authentication started failing or works again: an `auth` notification."""
    try:
        events.auth_result(snapshot.error if snapshot.ok is False else None)
    except JournalError as exc:
        log.error("cannot record the authentication state", error=str(exc))


def start_console(daemon: Daemon, listen: str, token: str | None) -> Any:
    """The web console on `listen`, or None if it cannot listen (said in the log)."""
    from ..web.server import ConsoleServer  # its packages load only when it is asked for

    try:
        server = ConsoleServer(daemon, listen, token).start()
    except OSError as exc:
        log.error("web console not started", error=str(exc))
        return None
    log.info("web console", url=server.url)
    return server
