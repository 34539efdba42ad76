"""The daemon's upload workers: each takes a file id from the queue and uploads that file.

What an upload's outcome means for the file (paused, changed, gone, rejected, started over, failed
and due again later) is decided here, once per file; the engine has already journaled what it did.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

from ..api import AuthenticationError
from ..control import Control
from ..engine import FileChanged, StartOver, Stopped, Uploader, UploadFailed
from ..events.emitter import EventHub
from ..inputs import InputProblem
from ..journal import FileRecord, Journal, JournalError, JournalRowError, UploadState
from ..logging import get_logger
from ..results.poller import Poller
from ..retry import RetryPolicy
from ..status.metrics import Metrics
from ..timestamps import utc_in
from ..watch.watcher import Watcher
from .keeper import HealthKeeper
from .queue import UploadQueue

log = get_logger("teleport_sync.daemon")

RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
JOURNAL_RETRY_SECONDS = 5.0


def file_retry_policy(rng: random.Random | None = None) -> RetryPolicy:
    """Backoff for a whole file that failed: 30 s, 60 s, ... up to an hour, never less than half
    of that (the same policy type as request and part retries, with a floor)."""
    return RetryPolicy(
        base_delay=RETRY_BASE_SECONDS,
        max_delay=RETRY_MAX_SECONDS,
        floor_fraction=0.5,
        rng=rng or random.Random(),
    )


class Uploads:
    """The body of each upload worker thread (`worker`), and what one upload's outcome means."""

    def __init__(
        self,
        queue: UploadQueue,
        journal: Journal,
        uploader: Uploader,
        control: Control,
        keeper: HealthKeeper,
        *,
        watcher: Watcher,
        poller: Poller,
        events: EventHub,
        metrics: Metrics,
        stop: threading.Event,
        next_attempt: Callable[[int], str],
        report_status: Callable[[], None],
        not_ours: Callable[[FileRecord], bool] = lambda record: False,
    ) -> None:
        self.queue = queue
        self.journal = journal
        self.uploader = uploader
        self.control = control
        self.keeper = keeper
        # A file that changed mid-upload goes back to the watcher, to settle again.
        self.watcher = watcher
        self.poller = poller
        self.events = events
        self.metrics = metrics
        self.stop = stop
        self._next_attempt = next_attempt
        self._report_status = report_status
        # True when another live journal owns the file's folder: the file is held here, and
        # what this daemon began of it is given up (`FolderClaims.give_up`); or while this
        # daemon's claim on it waits to be confirmed (the confirmation queues it again).
        self._not_ours = not_ours

    def worker(self) -> None:
        while True:
            file_id = self.queue.get()
            if file_id is None or self.stop.is_set():
                return
            self.queue.report_depth()
            wait = self.keeper.auth.blocked_for()
            if wait is not None:
                # Authentication is failing: every upload would fail the same way. Wait for
                # the backoff instead of calling the API (and counting a failure) per file.
                self.queue.retry_in_memory(file_id, wait)
                self._journal_wait(file_id, wait)
                self.queue.done(file_id)
                continue
            try:
                self.process(self.journal.get(file_id))
            except JournalRowError as exc:
                # That row is failed with the fix in it; the other files go on.
                log.error("journal row unreadable; file skipped", file_id=file_id, error=str(exc))
            except JournalError as exc:
                # Disk full or read-only: acknowledged work is safe; try again in a while.
                log.error("journal write failed; retrying the file later", error=str(exc))
                self.metrics.failures.labels("journal").inc()
                self.queue.retry_in_memory(file_id, JOURNAL_RETRY_SECONDS)
            except Exception:  # one file's surprise must not end the daemon
                log.exception("unexpected error while uploading", file_id=file_id)
                self.queue.retry_in_memory(file_id, RETRY_BASE_SECONDS)
            finally:
                self.queue.done(file_id)
                self._report_status()

    def _journal_wait(self, file_id: int, seconds: float) -> None:
        """A failed row held back by the authentication backoff shows when it goes next (a
        "retry now" had cleared its time), so `status` never shows a failure with no next try."""
        try:
            if self.journal.get(file_id).upload_state == UploadState.FAILED:
                self.journal.set_next_attempt(file_id, utc_in(seconds))
        except JournalError as exc:  # the in-memory retry still holds
            log.warning("cannot journal the next attempt", file_id=file_id, error=str(exc))

    def process(self, record: FileRecord) -> None:
        path = Path(record.path)
        try:
            if self._not_ours(record):  # it said why (`FolderClaims.give_up`)
                return
        except UploadFailed as exc:  # the account could not be read to give the upload up
            when = self._next_attempt(record.attempts + 1)
            self.journal.mark_failed(record.id, str(exc), when)
            log.error("cannot give up the upload yet; will retry", path=str(path), error=str(exc))
            return
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
            self._changed(path, exc)
            return
        except InputProblem as exc:
            self._input_problem(record, path, exc)
            return
        except StartOver as exc:
            # The row says why and has no capture now; its next attempt is scheduled.
            self.metrics.failures.labels("vanished").inc()
            log.warning("capture vanished; starting over", path=str(path), error=str(exc))
            return
        except UploadFailed as exc:
            self._failed(record, path, exc)
            return
        self.keeper.auth.succeeded()
        if not result.already_uploaded:
            self._count_uploaded(record.id)
        self.poller.wake.set()

    def _count_uploaded(self, file_id: int) -> None:
        """One more capture in the metrics, with the frames and estimated cost intake counted
        (the fleet dashboard's captures and spend per day)."""
        try:
            facts = self.journal.control_facts(file_id)
        except (KeyError, JournalError):  # forgotten meanwhile, or the disk: count it bare
            facts = {}
        self.metrics.count_uploaded(facts.get("frames"), facts.get("estimated_cost"))

    def _changed(self, path: Path, exc: FileChanged) -> None:
        log.warning(
            "file changed during upload; waiting for it to settle",
            path=str(path),
            error=str(exc),
        )
        self.metrics.failures.labels("changed").inc()
        root = next((r for r in self.watcher.roots if path.is_relative_to(r)), path.parent)
        self.watcher.notice(path, root)

    def _input_problem(self, record: FileRecord, path: Path, exc: InputProblem) -> None:
        self.metrics.failures.labels("input").inc()
        current = self.journal.get(record.id)
        if not path.exists():
            why = f"{path} was deleted before its upload finished"
            if current.eid and current.upload_state != UploadState.UPLOADED:
                why += "; its capture was deleted"
            self.uploader.abandon(current, why)
            self.events.file_rejected(path)
            log.warning("file disappeared before it was uploaded", path=str(path))
        elif exc.retryable:
            self.journal.set_next_attempt(record.id, self._next_attempt(record.attempts + 1))
            log.error("upload failed; will retry", path=str(path), error=str(exc))
        else:
            if current.upload_state == UploadState.UPLOADED:
                # A new version replaced an uploaded file and cannot be used: the row starts
                # over (its finished capture is kept) before it is refused.
                self.journal.restart(
                    current.id,
                    current.identity,
                    current.input_data_format,
                    current.name,
                    "the file changed",
                )
            self.journal.mark_rejected(record.id, str(exc))
            self.events.file_rejected(path)
            log.error("not uploaded", path=str(path), reason=str(exc))

    def _failed(self, record: FileRecord, path: Path, exc: UploadFailed) -> None:
        self.metrics.failures.labels("upload").inc()
        if isinstance(exc.__cause__, AuthenticationError):
            self.keeper.auth.failed(str(exc.__cause__))
        # The uploader journaled the failure and its next attempt in one transaction.
        when = self.journal.get(record.id).next_attempt_at
        log.error("upload failed; will retry", path=str(path), error=str(exc), retry_at=when)
