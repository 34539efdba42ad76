"""The daemon (`teleport-sync run`): the threads that watch, upload, follow and fetch.

Threads of the daemon:
- the watcher's settle checker, which hands settled files to `_intake`;
- `files_at_once` upload workers, fed by a queue of journal file ids (the journal, not the queue,
  is the truth: on start every unfinished file is queued again);
- the poller, which follows captures and triggers actions;
- the main thread: signals, sd_notify, retries that came due, metrics.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from .api import AuthenticationError
from .authstate import AuthSnapshot
from .compose import FolderActions, components
from .config import ConfigError, Settings, load_settings
from .control import budget_from
from .engine import FileChanged, StartOver, Stopped, UploadFailed
from .events.emitter import EventHub
from .folders import capture_plan, effective, watch_roots
from .inputs import (
    InputProblem,
    capture_name,
    check_complete,
    identify,
    input_format_for,
    same_file_as,
)
from .journal import FileRecord, JournalError, JournalRowError
from .keeper import HealthKeeper
from .logging import configure_logging, get_logger
from .lostjournal import hold_existing
from .metrics import Metrics, MetricsProgress
from .models import FileIdentity
from .notify import SystemdNotifier
from .poller import Poller
from .reloading import merge_for_reload
from .report import ReportOptions
from .sightings import Sightings
from .watcher import Watcher

log = get_logger("teleport_sync.daemon")

RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
JOURNAL_RETRY_SECONDS = 5.0
UNREADABLE = (
    "permission denied; let the teleport-sync user read it (chmod o+r, or "
    "setfacl -m u:teleport-sync:r); it is retried, and taken at once when its permissions change"
)
# How often pending actions are looked at; a failed download's own backoff (actions.py) decides
# whether it is tried again then.
ACTIONS_RETRY_SECONDS = 30.0
# Watch roots are re-checked this often: a share mounted late is watched within this time.
ROOT_CHECK_SECONDS = 10.0


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Backoff for a file that failed `attempts` times: 30 s, 60 s, ... up to an hour, jittered."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return rng.uniform(ceiling / 2, ceiling)


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
    ) -> None:
        self.settings = settings
        # True: files already in the roots are uploaded even when the journal is new to them.
        self.upload_existing = upload_existing
        self._renaming: threading.Thread | None = None
        self.stop = stop or threading.Event()
        self.notifier = notifier or SystemdNotifier()
        self.metrics = Metrics()
        self.progress = MetricsProgress(self.metrics)
        self.web_url: str | None = None
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()
        self._delayed: list[tuple[float, int]] = []
        self.actions_retry_seconds = actions_retry_seconds
        self.root_check_seconds = root_check_seconds
        self.auth_backoff = auth_backoff
        # Reads the config file again (SIGHUP); by default from where it was read first.
        self._load = reload or (lambda: load_settings(settings.source_path))
        self._reload_requested = threading.Event()
        self._rng = random.Random()
        self.ready = threading.Event()
        # Actions for one capture run one at a time (the poller and a webhook may both see it).
        self._terminal_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("stopping", signal=signal.Signals(signum).name)
            self.stop.set()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        # systemd's `reload` (ExecReload=/bin/kill -HUP $MAINPID): read the config again.
        signal.signal(signal.SIGHUP, reload)

    def request_reload(self) -> None:
        """Read the config again at the main loop's next turn (within a few seconds)."""
        self._reload_requested.set()

    def _reload(self) -> None:
        """Apply a changed config without dropping work; a bad one is refused, the old kept."""
        try:
            new = self._load()
        except ConfigError as exc:
            log.error("config not reloaded; the running config stays in effect", error=str(exc))
            return
        new, later = merge_for_reload(self.settings, new)
        self.settings = new
        configure_logging(new.log.level, new.log.format)
        self.watcher.settings = new.watch
        self.watcher.set_roots(watch_roots(new))
        self.keeper.roots_changed(self.watcher.root_statuses())
        self.actions = FolderActions(
            new, self.client, self.journal, retry_base_seconds=self.actions_retry_seconds
        )
        self.poller.interval = new.poll.interval_seconds
        self.events.reload(new)
        # Names and training parameters per folder and sidecar, from the new settings.
        self.uploader.plan_for = lambda path: capture_plan(new, path)
        limiter = self.control.reconfigure(budget_from(new.budget), new.upload.bwlimit)
        self.uploader.ctx.throttle = limiter.consume if limiter is not None else None
        self.metrics.watch_bwlimit(limiter)
        log.info(
            "config reloaded",
            config=str(new.source_path or "(no config file; environment only)"),
            watching=[str(p) for p in self.watcher.roots],
            needs_restart=later or None,
        )

    def run(self) -> int:
        settings = self.settings
        with components(
            settings,
            progress=self.progress,
            stop=self.stop,
            on_retry=lambda what: self.metrics.retries.labels(what).inc(),
        ) as parts:
            self.journal = parts.journal
            self.client = parts.client
            self.uploader = parts.uploader
            self.control = parts.control
            self.metrics.watch_bwlimit(parts.control.limiter)
            self.actions = FolderActions(
                settings, parts.client, parts.journal, retry_base_seconds=self.actions_retry_seconds
            )
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
                on_terminal=self._on_terminal,
                stop=self.stop,
                auth=self.keeper.auth,
            )
            self.events = EventHub(
                settings,
                parts.journal,
                stop=self.stop,
                registry=self.metrics.registry,
                viewer_url=self._viewer_url,
            )
            self.keeper.on_auth_change = self._auth_changed
            self.sightings = Sightings(
                parts.journal, settle_seconds=lambda: self.settings.watch.settle_seconds
            )
            self._known = parts.journal.quick_index()
            self.watcher = Watcher(
                # `[[watch.folder]]` paths are watched too, each with its own settle time.
                settings.watch.model_copy(update={"paths": watch_roots(settings)}),
                self._intake,
                settle_for=lambda path: effective(self.settings, path).settle_seconds,
                on_refused=self._refused,
                on_noticed=self.sightings.noticed,
                on_gone=self.sightings.gone,
                is_known=lambda path, st: (
                    self._known.get(str(path.absolute()))
                    == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                ),
            )
            if settings.metrics.listen:
                self.metrics.serve(settings.metrics.listen)
            self.keeper.started()
            web = start_console(self) if settings.web.listen else None
            try:
                # First: a port already taken is a configuration error, before any work starts.
                self.events.start(self._on_terminal_soon)
                return self._run_threads()
            finally:
                if web is not None:
                    web.stop()
                self.keeper.stopped()
                self.events.close()
                self.metrics.close()

    def retry_now(self, file_id: int) -> None:
        """Queue a file at once (the web console's "retry now")."""
        self._enqueue(file_id)

    def _run_threads(self) -> int:
        workers = [
            threading.Thread(target=self._worker, name=f"upload-{i}", daemon=True)
            for i in range(self.settings.upload.files_at_once)
        ]
        for worker in workers:
            worker.start()
        poller = threading.Thread(target=self.poller.run, name="poller", daemon=True)
        poller.start()
        auth = threading.Thread(target=self.keeper.watch_auth, name="auth", daemon=True)
        auth.start()
        self.control.start_watching(self.stop, self._enqueue_unfinished)  # before the queueing

        self.events.sweep()
        self._resume_known_work()

        self.watcher.start()
        self.keeper.roots_changed(self.watcher.root_statuses())
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
        self.notifier.ready()
        self.ready.set()

        tick = min(self.root_check_seconds, self.notifier.watchdog_interval or 5.0)
        now = time.monotonic()
        # When each chore of the main loop is next due (monotonic seconds).
        self._next = {
            "actions": now + self.actions_retry_seconds,
            "roots": now + self.root_check_seconds,
            "rescan": now + self.settings.watch.rescan_seconds,
        }
        while not self.stop.is_set():
            self.notifier.watchdog()
            try:
                self._upkeep()
            except JournalError as exc:
                log.error("journal unavailable; will keep trying", error=str(exc))
            except Exception:  # the main loop must outlive any one bad moment
                log.exception("unexpected error in the main loop")
            self.stop.wait(tick)

        self.notifier.stopping()
        log.info("stopping: finishing parts in flight")
        self.keeper.auth.failing.set()  # wakes the authentication probe
        self.watcher.stop()
        self.poller.wake.set()
        for _ in workers:
            self._queue.put(None)
        deadline = time.monotonic() + 8.0
        for thread in [*workers, poller, auth]:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        log.info("stopped")
        return 0

    def _resume_known_work(self) -> None:
        """Work the journal already knows: unfinished uploads, due retries, pending actions and
        renames; and the hold on files a new journal finds (see `lostjournal`)."""
        for record in self.journal.unfinished():
            self._enqueue(record.id)
        self._enqueue_due_retries()
        self._retry_pending_actions()
        self.sightings.prune()
        self._finish_renames()
        if not self.upload_existing:
            hold_existing(self.journal, self.settings.watch, self.settings.upload.name_template)

    def _finish_renames(self) -> None:
        """Captures still named with their token get their final name, on a thread of their own:
        an API that is down must not hold up the start or the main loop."""
        if self._renaming is not None and self._renaming.is_alive():
            return

        def rename() -> None:
            try:
                self.uploader.finish_renames()
            except Exception:  # retried at the next round
                log.exception("renaming captures failed; will retry")

        self._renaming = threading.Thread(target=rename, name="rename", daemon=True)
        self._renaming.start()

    def _upkeep(self) -> None:
        """The main loop's chores: retries due, roots re-checked, rescans, reloads, reports."""
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self._reload()
        if not self.keeper.auth.waiting():
            self._enqueue_due_retries()
        self._enqueue_delayed()
        if self._due("roots", self.root_check_seconds) and self.watcher.check_roots():
            self.keeper.roots_changed(self.watcher.root_statuses())
        rescan = self.settings.watch.rescan_seconds
        if rescan and self._due("rescan", rescan):
            self._known = self.journal.quick_index()
            found = self.watcher.scan()
            log.info("rescanned the watch folders", new_files=found)
        self._report_status()
        self.events.check_stuck()
        if self._due("actions", self.actions_retry_seconds):
            self._retry_pending_actions()
            self._finish_renames()

    def _due(self, chore: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._next[chore]:
            return False
        self._next[chore] = now + every
        return True

    # -- intake: settled files ---------------------------------------------------------------------

    def _intake(self, path: Path, root: Path) -> None:
        """A settled candidate: reject it, wait for it, skip it, or queue it."""
        path = path.absolute()
        try:
            fmt = input_format_for(path)
            st = path.stat()
        except InputProblem as exc:
            log.info("ignored", path=str(path), reason=str(exc))
            self.sightings.ended(path)
            return
        except FileNotFoundError:
            self.sightings.gone(path)
            return
        name = capture_name(effective(self.settings, path).name_template, path)
        quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        try:
            record = self.journal.by_path(str(path))
        except JournalRowError as exc:
            log.error("not uploaded", path=str(path), reason=str(exc))
            return
        if (
            record is not None
            and _same_stat(record.identity, quick)
            and record.upload_state in ("uploaded", "rejected")
        ):
            self.sightings.ended(path)
            return  # nothing new (a touch that changed nothing, a repeated event)
        try:
            completeness = check_complete(path)
        except OSError as exc:
            why = UNREADABLE if isinstance(exc, PermissionError) else f"cannot read: {exc}"
            self._reject(path, quick, fmt.value, name, why, retry=True, root=root)
            return
        if completeness.state == "invalid":
            self._reject(path, quick, fmt.value, name, completeness.reason)
            return
        if completeness.state == "incomplete":
            self._wait_for_complete(path, root, st, completeness.reason, (fmt.value, name))
            return
        try:
            identity = identify(path)
            name = capture_plan(self.settings, path)[0]  # a bad sidecar rejects the input
        except InputProblem as exc:
            self._reject(path, quick, fmt.value, name, str(exc), retry=exc.retryable, root=root)
            return
        twin = same_file_as(path, identity, self.journal.paths_of_inode(st.st_dev, st.st_ino))
        if twin is not None:
            why = f"the same file as {twin} (a symlink or hard link to it), which is uploaded once"
            self._reject(path, quick, fmt.value, name, why)
            return
        record = self.journal.register(str(path), identity, fmt.value, name)
        self.sightings.ended(path)
        if record.identity == identity and record.upload_state in ("uploaded", "rejected"):
            return
        self._enqueue(record.id)

    def _wait_for_complete(
        self, path: Path, root: Path, st: os.stat_result, reason: str, what: tuple[str, str]
    ) -> None:
        """Not complete yet: look again later; give up once it stopped changing for long."""
        waited = self.sightings.incomplete(path, root, st, reason)
        if waited >= self.settings.watch.incomplete_timeout_seconds:
            quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
            self._reject(
                path,
                quick,
                *what,
                f"{reason}; it has not changed for {int(waited)} s, so it is treated as broken "
                "(rewrite or re-copy the file to try again)",
            )
            return
        delay = max(1.0, min(30.0, self.settings.watch.settle_seconds * 2))
        self.watcher.recheck_later(path, root, delay)

    def _refused(self, path: Path, reason: str) -> None:
        """The watcher will not take `path` (a symlink out of the root, a folder named .zip)."""
        try:
            st = path.lstat()
            fmt = input_format_for(path).value
        except (OSError, InputProblem):
            return
        quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        name = capture_name(effective(self.settings, path).name_template, path)
        self._reject(path, quick, fmt, name, reason)

    def _reject(
        self,
        path: Path,
        identity: FileIdentity,
        fmt: str,
        name: str,
        reason: str,
        *,
        retry: bool = False,
        root: Path | None = None,
    ) -> None:
        message = reason if str(path) in reason else f"{path}: {reason}"
        self.sightings.ended(path)
        if retry:
            record = self.journal.register(str(path), identity, fmt, name)
            self.journal.mark_failed(record.id, message, self._next_attempt(record.attempts + 1))
        else:
            self.journal.reject(str(path), identity, fmt, name, message)
            self.events.file_rejected(path)
        log.error("not uploaded", path=str(path), reason=message)

    # -- the queue and workers --------------------------------------------------------------

    def _enqueue(self, file_id: int) -> None:
        with self._queued_lock:
            if file_id in self._queued:
                return
            self._queued.add(file_id)
        self._queue.put(file_id)
        self.metrics.queue_depth.set(self._queue.qsize())

    def _enqueue_due_retries(self) -> None:
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        for record in self.journal.due_retries(now):
            self._enqueue(record.id)

    def _worker(self) -> None:
        while True:
            file_id = self._queue.get()
            if file_id is None or self.stop.is_set():
                return
            self.metrics.queue_depth.set(self._queue.qsize())
            wait = self.keeper.auth.blocked_for()
            if wait is not None:
                # Authentication is failing: every upload would fail the same way. Wait for
                # the backoff instead of calling the API (and counting a failure) per file.
                self._retry_in_memory(file_id, wait)
                with self._queued_lock:
                    self._queued.discard(file_id)
                continue
            try:
                self._process(self.journal.get(file_id))
            except JournalRowError as exc:
                # That row is failed with the fix in it; the other files go on.
                log.error("journal row unreadable; file skipped", file_id=file_id, error=str(exc))
            except JournalError as exc:
                # Disk full or read-only: acknowledged work is safe; try again in a while.
                log.error("journal write failed; retrying the file later", error=str(exc))
                self.metrics.failures.labels("journal").inc()
                self._retry_in_memory(file_id, JOURNAL_RETRY_SECONDS)
            except Exception:  # one file's surprise must not end the daemon
                log.exception("unexpected error while uploading", file_id=file_id)
                self._retry_in_memory(file_id, RETRY_BASE_SECONDS)
            finally:
                with self._queued_lock:
                    self._queued.discard(file_id)
                self._report_status()

    def _process(self, record: FileRecord) -> None:
        path = Path(record.path)
        waiting = self.control.admit(record)
        if waiting is not None:
            # Paused or held: queued again (`Control.start_watching`) once resumed or approved.
            log.info("not starting", path=str(path), reason=waiting)
            return
        try:
            result = self.uploader.upload(path)
        except Stopped as exc:
            if not self.stop.is_set():
                log.info("upload paused", path=str(path), reason=str(exc))
            return
        except FileChanged as exc:
            log.warning(
                "file changed during upload; waiting for it to settle",
                path=str(path),
                error=str(exc),
            )
            self.metrics.failures.labels("changed").inc()
            root = next((r for r in self.watcher.roots if path.is_relative_to(r)), path.parent)
            self.watcher.notice(path, root)
            return
        except InputProblem as exc:
            self.metrics.failures.labels("input").inc()
            if not path.exists():
                why = f"{path} was deleted before its upload finished; its capture was deleted"
                self.uploader.abandon(self.journal.get(record.id), why)
                self.events.file_rejected(path)
                log.warning("file disappeared before it was uploaded", path=str(path))
            elif exc.retryable:
                self.journal.set_next_attempt(record.id, self._next_attempt(record.attempts + 1))
                log.error("upload failed; will retry", path=str(path), error=str(exc))
            else:
                self.journal.mark_rejected(record.id, str(exc))
                self.events.file_rejected(path)
                log.error("not uploaded", path=str(path), reason=str(exc))
            return
        except StartOver as exc:
            # The row says why and has no capture now; it is due again at once.
            self.metrics.failures.labels("vanished").inc()
            log.warning("capture vanished; starting over", path=str(path), error=str(exc))
            return
        except UploadFailed as exc:
            self.metrics.failures.labels("upload").inc()
            if isinstance(exc.__cause__, AuthenticationError):
                self.keeper.auth.failed(str(exc.__cause__))
            attempts = self.journal.get(record.id).attempts
            when = self._next_attempt(attempts)
            self.journal.set_next_attempt(record.id, when)
            log.error("upload failed; will retry", path=str(path), error=str(exc), retry_at=when)
            return
        self.keeper.auth.succeeded()
        if not result.already_uploaded:
            self.metrics.files_uploaded.inc()
        self.poller.wake.set()

    def _enqueue_unfinished(self) -> None:
        """Resumed, approved, or the upload window opened: paused and held files go again."""
        for record in self.journal.unfinished():
            self._enqueue(record.id)

    def _on_terminal(self, record: FileRecord) -> None:
        with self._terminal_lock:
            self.actions.run_for(record)
            # After the actions: a `ready` notification names the downloaded models.
            self.events.capture_ended(self.journal.get(record.id))
        self._report_status()

    def _on_terminal_soon(self, record: FileRecord) -> None:
        """A webhook's READY/ERROR: answer Teleport at once, download on another thread."""

        def run() -> None:
            try:
                self._on_terminal(self._with_sid(record))
            except Exception:  # logged; the periodic retry of pending actions picks it up
                log.exception("actions after a webhook failed", path=record.path)

        threading.Thread(target=run, name="webhook-actions", daemon=True).start()

    def _with_sid(self, record: FileRecord) -> FileRecord:
        """A webhook that named no share id: ask for it, as the download needs it."""
        if record.sid or not record.eid or (record.capture_state or "").upper() != "READY":
            return record
        capture = self.client.find_capture(record.eid)
        if capture is not None and capture.sid:
            self.journal.record_state(record.id, record.capture_state or "READY", capture.sid)
        return self.journal.get(record.id)

    def _auth_changed(self, snapshot: AuthSnapshot) -> None:
        """Authentication started failing or works again: an `auth` notification."""
        try:
            self.events.auth_result(snapshot.error if snapshot.ok is False else None)
        except JournalError as exc:
            log.error("cannot record the authentication state", error=str(exc))

    def _viewer_url(self, record: FileRecord) -> str | None:
        capture = self.client.find_capture(record.eid) if record.eid else None
        return capture.viewer_url if capture is not None else None

    def _retry_in_memory(self, file_id: int, delay: float) -> None:
        """For when even the journal cannot take the retry schedule."""
        with self._queued_lock:
            if all(f != file_id for _, f in self._delayed):
                self._delayed.append((time.monotonic() + delay, file_id))

    def _enqueue_delayed(self) -> None:
        now = time.monotonic()
        with self._queued_lock:
            due = [f for at, f in self._delayed if at <= now]
            self._delayed = [(at, f) for at, f in self._delayed if at > now]
        for file_id in due:
            self._enqueue(file_id)

    def _retry_pending_actions(self) -> None:
        """Actions that failed (results dir not writable, API down) get another go."""
        for record in self.journal.terminal():
            self.actions.run_for(record)

    def _next_attempt(self, attempts: int) -> str:
        delay = retry_delay(attempts, self._rng)
        return (datetime.now(UTC) + timedelta(seconds=delay)).isoformat(timespec="microseconds")

    def _report_status(self) -> None:
        counts = self.journal.counts_by_state()
        for state in ("pending", "uploading", "uploaded", "failed", "rejected"):
            self.metrics.files.labels(state).set(counts.get(state, 0))
        for state, n in self.journal.capture_counts().items():
            self.metrics.captures.labels(state).set(n)
        self.keeper.report(extra=f"{self._queue.qsize()} waiting for an upload slot")


def start_console(daemon: Daemon) -> Any:
    """The web console (`[web] listen`), or None if it cannot listen (said in the log)."""
    from .web.server import ConsoleServer  # its packages load only when it is asked for

    listen = daemon.settings.web.listen
    assert listen is not None
    try:
        server = ConsoleServer(daemon, listen, daemon.settings.web.token_value()).start()
    except OSError as exc:
        log.error("web console not started", error=str(exc))
        return None
    daemon.web_url = server.url
    log.info("web console", url=server.url)
    return server


def _same_stat(a: FileIdentity, b: FileIdentity) -> bool:
    return (a.dev, a.inode, a.size, a.mtime_ns) == (b.dev, b.inode, b.size, b.mtime_ns)
