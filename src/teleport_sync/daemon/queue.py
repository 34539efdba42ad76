"""The daemon's queue of journal file ids waiting for an upload worker.

The journal, not this queue, is the truth: on start every unfinished file is queued again. The
queue only keeps one id from being handed to two workers at once, and holds the retries that
even the journal could not take (`retry_in_memory`).
"""

from __future__ import annotations

import queue
import threading
import time

from ..journal import Journal
from ..status.metrics import Metrics
from ..timestamps import utc_now


class UploadQueue:
    """File ids for the upload workers; each id at most once, queued or being uploaded."""

    def __init__(self, journal: Journal, metrics: Metrics) -> None:
        self.journal = journal
        self.metrics = metrics
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._delayed: list[tuple[float, int]] = []

    def qsize(self) -> int:
        return self._queue.qsize()

    def enqueue(self, file_id: int) -> None:
        with self._lock:
            if file_id in self._queued:
                return
            self._queued.add(file_id)
        self._queue.put(file_id)
        self.report_depth()

    def report_depth(self) -> None:
        self.metrics.queue_depth.set(self._queue.qsize())

    def get(self) -> int | None:
        """The next file id for a worker, or None: that worker is to stop."""
        return self._queue.get()

    def done(self, file_id: int) -> None:
        """The worker is through with `file_id`: it may be queued again."""
        with self._lock:
            self._queued.discard(file_id)

    def stop_workers(self, count: int) -> None:
        for _ in range(count):
            self._queue.put(None)

    def enqueue_due_retries(self) -> None:
        now = utc_now()
        for record in self.journal.due_retries(now):
            self.enqueue(record.id)

    def enqueue_unfinished(self) -> None:
        """Resumed, approved, or the upload window opened: paused and held files go again."""
        for record in self.journal.unfinished():
            self.enqueue(record.id)

    def retry_in_memory(self, file_id: int, delay: float) -> None:
        """For when even the journal cannot take the retry schedule."""
        with self._lock:
            if all(f != file_id for _, f in self._delayed):
                self._delayed.append((time.monotonic() + delay, file_id))

    def enqueue_delayed(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [f for at, f in self._delayed if at <= now]
            self._delayed = [(at, f) for at, f in self._delayed if at > now]
        for file_id in due:
            self.enqueue(file_id)
