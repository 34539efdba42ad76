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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from .actions import Actions
from .compose import components, results_dir
from .config import Settings
from .engine import FileChanged, StartOver, Stopped, Uploader, UploadFailed
from .inputs import (
    InputProblem,
    capture_name,
    check_complete,
    identify,
    input_format_for,
    same_file_as,
)
from .journal import FileRecord, JournalError, JournalRowError
from .logging import get_logger
from .lostjournal import hold_existing
from .metrics import Metrics, MetricsProgress
from .models import FileIdentity
from .notify import SystemdNotifier
from .poller import Poller
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
ACTIONS_RETRY_SECONDS = 300.0


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
    ) -> None:
        self.settings = settings
        # True: files already in the roots are uploaded even when the journal is new to them.
        self.upload_existing = upload_existing
        self.stop = stop or threading.Event()
        self.notifier = notifier or SystemdNotifier()
        self.metrics = Metrics()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()
        self._delayed: list[tuple[float, int]] = []
        self.actions_retry_seconds = actions_retry_seconds
        self._rng = random.Random()
        self.ready = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("stopping", signal=signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        settings = self.settings
        with components(
            settings,
            progress=MetricsProgress(self.metrics),
            stop=self.stop,
            on_retry=lambda what: self.metrics.retries.labels(what).inc(),
        ) as parts:
            self.journal = parts.journal
            self.client = parts.client
            self.uploader = parts.uploader
            self.renames = _Renames(parts.uploader)
            self.actions = Actions(
                parts.client,
                parts.journal,
                results=settings.results,
                actions=settings.actions,
                roots=list(settings.watch.paths),
                results_dir=results_dir(settings),
            )
            self.poller = Poller(
                parts.client,
                parts.journal,
                interval_seconds=settings.poll.interval_seconds,
                on_terminal=self._on_terminal,
                stop=self.stop,
            )
            self.sightings = Sightings(
                parts.journal, settle_seconds=lambda: self.settings.watch.settle_seconds
            )
            known = parts.journal.quick_index()
            self.watcher = Watcher(
                settings.watch,
                self._intake,
                on_refused=self._refused,
                on_noticed=self.sightings.noticed,
                on_gone=self.sightings.gone,
                is_known=lambda path, st: (
                    known.get(str(path.absolute()))
                    == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                ),
            )
            if settings.metrics.listen:
                self.metrics.serve(settings.metrics.listen)
            try:
                return self._run_threads()
            finally:
                self.metrics.close()

    def _run_threads(self) -> int:
        workers = [
            threading.Thread(target=self._worker, name=f"upload-{i}", daemon=True)
            for i in range(self.settings.upload.files_at_once)
        ]
        for worker in workers:
            worker.start()
        poller = threading.Thread(target=self.poller.run, name="poller", daemon=True)
        poller.start()

        self._resume_known_work()

        self.watcher.start()
        started = time.monotonic()
        found = self.watcher.scan()
        log.info(
            "watching",
            paths=[str(p) for p in self.watcher.roots],
            new_files=found,
            scan_seconds=round(time.monotonic() - started, 3),
        )
        self.notifier.ready()
        self.ready.set()

        tick = min(5.0, self.notifier.watchdog_interval or 5.0)
        next_actions_retry = time.monotonic() + self.actions_retry_seconds
        while not self.stop.is_set():
            self.notifier.watchdog()
            try:
                self._enqueue_due_retries()
                self._enqueue_delayed()
                self._report_status()
                if time.monotonic() >= next_actions_retry:
                    next_actions_retry = time.monotonic() + self.actions_retry_seconds
                    self._retry_pending_actions()
                    self.renames.kick()
            except JournalError as exc:
                log.error("journal unavailable; will keep trying", error=str(exc))
            except Exception:  # the main loop must outlive any one bad moment
                log.exception("unexpected error in the main loop")
            self.stop.wait(tick)

        self.notifier.stopping()
        log.info("stopping: finishing parts in flight")
        self.watcher.stop()
        self.poller.wake.set()
        for _ in workers:
            self._queue.put(None)
        deadline = time.monotonic() + 8.0
        for thread in [*workers, poller]:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.renames.join(max(0.1, deadline - time.monotonic()))
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
        self.renames.kick()
        if not self.upload_existing:
            hold_existing(self.journal, self.settings.watch, self.settings.upload.name_template)

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
        name = capture_name(self.settings.upload.name_template, path)
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
        name = capture_name(self.settings.upload.name_template, path)
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
        try:
            result = self.uploader.upload(path)
        except Stopped:
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
                log.warning("file disappeared before it was uploaded", path=str(path))
            elif exc.retryable:
                self.journal.set_next_attempt(record.id, self._next_attempt(record.attempts + 1))
                log.error("upload failed; will retry", path=str(path), error=str(exc))
            else:
                self.journal.mark_rejected(record.id, str(exc))
                log.error("not uploaded", path=str(path), reason=str(exc))
            return
        except StartOver as exc:
            # The row says why and has no capture now; it is due again at once.
            self.metrics.failures.labels("vanished").inc()
            log.warning("capture vanished; starting over", path=str(path), error=str(exc))
            return
        except UploadFailed as exc:
            self.metrics.failures.labels("upload").inc()
            attempts = self.journal.get(record.id).attempts
            when = self._next_attempt(attempts)
            self.journal.set_next_attempt(record.id, when)
            log.error("upload failed; will retry", path=str(path), error=str(exc), retry_at=when)
            return
        if not result.already_uploaded:
            self.metrics.files_uploaded.inc()
        self.poller.wake.set()

    def _on_terminal(self, record: FileRecord) -> None:
        self.actions.run_for(record)
        self._report_status()

    def _retry_in_memory(self, file_id: int, delay: float) -> None:
        """For when even the journal cannot take the retry schedule."""
        with self._queued_lock:
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
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no files"
        self.notifier.status(
            f"{summary}; {self._queue.qsize()} queued, {self.watcher.pending_count} settling"
        )


def _same_stat(a: FileIdentity, b: FileIdentity) -> bool:
    return (a.dev, a.inode, a.size, a.mtime_ns) == (b.dev, b.inode, b.size, b.mtime_ns)


class _Renames:
    """Captures still named with their token get their final name, on a thread of their own:
    an API that is down must not hold up the start or the main loop."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="rename", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.uploader.finish_renames()
        except Exception:  # retried at the next round
            log.exception("renaming captures failed; will retry")

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
