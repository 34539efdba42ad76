"""What the engine's steps share: the client, the journal, the policy, the clock, the switches.

Tests and the CLI change `progress`, `stop`, `on_retry` and `concurrency` on the `Uploader`
after it is built; the steps read them here at the moment they act.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..journal import Journal
from ..retry import Clock, RetryPolicy
from .errors import Paused, Stopped
from .ports import TeleportClient
from .window import start_width


class Progress(Protocol):
    """What the engine reports while it works; the CLI draws bars, the daemon counts metrics."""

    def started(
        self, path: Path, total: int, done: int, num_parts: int, parts_done: int
    ) -> None: ...

    def advanced(self, path: Path, nbytes: int) -> None: ...

    def part_done(self, path: Path, number: int) -> None: ...


class NoProgress:
    def started(self, path: Path, total: int, done: int, num_parts: int, parts_done: int) -> None:
        pass

    def advanced(self, path: Path, nbytes: int) -> None:
        pass

    def part_done(self, path: Path, number: int) -> None:
        pass


@dataclass
class EngineContext:
    client: TeleportClient
    journal: Journal
    policy: RetryPolicy
    clock: Clock
    progress: Progress
    stop: threading.Event
    on_retry: Callable[[str], None]
    block_size: int
    concurrency: int
    # Does storage answer with MD5 ETags? None until the first part is acknowledged; remembered
    # in the journal per API base URL. Written by part threads: under `etag_lock`.
    etags_are_md5: bool | None = None
    etag_lock: threading.Lock = field(default_factory=threading.Lock)
    # Asked before each new part: None, or why no part may start now (pause, closed window).
    gate: Callable[[Path], str | None] = lambda path: None
    # Called before each block or sendfile slice goes out: the shared bandwidth limiter.
    throttle: Callable[[int], None] | None = None
    # One bound on parts in flight across every file this engine uploads at once
    # ([upload] max_parts_in_flight); None: only each file's own `concurrency`.
    in_flight: threading.BoundedSemaphore | None = None
    # How wide one file's window of parts in flight may grow (`window.FlightWindow`); 0: it
    # stays at `concurrency`.
    max_width: int = 0
    # The width of parts in flight the last file found to fill this path (the link's rate
    # times its round trip, over one connection's window), or None: the next file starts at
    # half of it and grows, instead of probing up from `concurrency` again. Remembered in the
    # journal per API base URL, as Linux keeps a path's ssthresh per destination.
    path_width: int | None = None
    # True when `path_width` is only what the path was shown to hold (a file ended while its
    # window was still growing): the next file starts at it, not at half.
    path_width_at_least: bool = False
    # What one part moved (bytes/s) when `path_width` was learned: a file started from it
    # finds a path that has turned slower (`window.FlightWindow.part_rate`).
    path_part_rate: float | None = None

    @property
    def etag_fact(self) -> str:
        return f"storage-etags-are-md5 {self.client.base_url}"

    @property
    def path_width_fact(self) -> str:
        return f"parts-in-flight-filling-the-path {self.client.base_url}"

    def recall(self) -> None:
        """What earlier runs learned, per API base URL, so a CLI upload does not re-learn it.

        When storage's ETags are not MD5s (SSE-KMS buckets, some S3-compatible stores), hashing
        could never be checked, so it is skipped: MD5 costs a core at ~500 MB/s. The path's
        width matters only to an adaptive window (`max_width`).
        """
        remembered = self.journal.fact(self.etag_fact)
        self.etags_are_md5 = None if remembered is None else remembered == "yes"
        # "76": the width that filled the path; "64+": it holds at least 64; then what one part
        # moved (bytes/s) when it was learned: "64+ 1747626".
        fact = (self.journal.fact(self.path_width_fact) or "") if self.max_width else ""
        width, _, part_rate = fact.partition(" ")
        digits = width.removesuffix("+")
        self.path_width = int(digits) if digits.isdigit() else None
        self.path_width_at_least = width.endswith("+") and self.path_width is not None
        self.path_part_rate = float(part_rate) if part_rate.isdigit() else None

    def start_width(self) -> int:
        return start_width(self.concurrency, self.path_width, self.path_width_at_least)

    def learn_path_width(self, width: int, part_rate: float | None = None) -> None:
        """A file found the width that fills the path (one part moving `part_rate` bytes/s)."""
        if width != self.path_width or self.path_width_at_least:
            self._remember(width, False, part_rate)

    def learn_path_holds(self, width: int, part_rate: float | None = None) -> None:
        """A file ended while its window still grew: the path holds at least `width`. Raises
        what is known, never lowers it (a short file shows less than the path holds)."""
        if width > self.concurrency and width > (self.path_width or 0):
            self._remember(width, True, part_rate)

    def _remember(self, width: int, at_least: bool, part_rate: float | None) -> None:
        self.path_width, self.path_width_at_least = width, at_least
        self.path_part_rate = part_rate
        fact = f"{width}{'+' if at_least else ''}" + (f" {round(part_rate)}" if part_rate else "")
        self.journal.set_fact(self.path_width_fact, fact)

    def learn_etags(self, md5_shaped: bool) -> None:
        with self.etag_lock:
            if self.etags_are_md5 is md5_shaped:
                return
            # First part ever, or storage changed its ways: remember what it does now.
            self.etags_are_md5 = md5_shaped
        self.journal.set_fact(self.etag_fact, "yes" if md5_shaped else "no")

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopping: the upload will resume where it left off")

    @contextmanager
    def part_slot(self) -> Iterator[None]:
        """Hold one of the slots for parts in flight while a part attempt runs; waiting for
        one gives way to a stop (the wait is re-checked twice a second)."""
        if self.in_flight is None:
            yield
            return
        while not self.in_flight.acquire(timeout=0.5):
            self.check_stop()
        try:
            yield
        finally:
            self.in_flight.release()

    def check_gate(self, path: Path) -> None:
        reason = self.gate(path)
        if reason is not None:
            raise Paused(f"{path}: {reason}")
