"""Watch folders (inotify through watchdog) and a startup scan -> settled candidate files.

A candidate is settled when its size and mtime have not changed for `settle_seconds`
(`settle_step`, a pure function). Only files that had an event are looked at again, so an idle
daemon touches neither the disk nor the CPU: the checker thread sleeps until an event arrives or
the next pending file is due.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from ..config import WatchSettings
from ..logging import get_logger
from ..retry import Clock, SystemClock
from .candidates import NOT_INCLUDED, ignore_reason
from .roots import RootKeeper

# Always ignored, whatever the include patterns say: partial downloads and editor temp files.
# How often the fallback observer (when inotify cannot be used) rescans the folders.
POLLING_SECONDS = 5.0
# How often roots on network file systems (NFS, SMB, FUSE) are polled for changes.
NETWORK_POLL_SECONDS = 10.0
# A settled file whose intake failed (journal unwritable, say) is looked at again this much later.
RECHECK_AFTER_ERROR_SECONDS = 5.0
# Close events remembered at most (the oldest is forgotten first): one per file being written.
MAX_CLOSED_REMEMBERED = 10_000

log = get_logger("teleport_sync.watcher")


@dataclass(frozen=True)
class Pending:
    """A candidate's last seen size and mtime, and since when they have held still."""

    size: int
    mtime_ns: int
    stable_since: float


def settle_step(
    previous: Pending | None, size: int, mtime_ns: int, now: float, settle_seconds: float
) -> tuple[Pending, bool]:
    """The settle rule: returns the new state and whether the file is settled now."""
    if previous is None or (previous.size, previous.mtime_ns) != (size, mtime_ns):
        return Pending(size, mtime_ns, now), settle_seconds <= 0
    return previous, now - previous.stable_since >= settle_seconds


def _ignored(watcher: Watcher, path: Path, root: Path) -> bool:
    """Not a candidate? A file only because of its type (not `[watch] include`d) is handed to
    `on_not_included`, so nothing in a watch folder is ignored in silence."""
    reason = ignore_reason(path, root, watcher.settings)
    if reason == NOT_INCLUDED:
        watcher.on_not_included(path, root)
    return reason is not None


def _watch(observer: BaseObserver, handler: _Handler, root: Path, recursive: bool) -> ObservedWatch:
    return observer.schedule(
        handler,
        str(root),
        recursive=recursive,
        event_filter=handler.EVENTS,
        # A root that is itself a symlink (a share reached by a second path) is watched where
        # it points; without this, inotify would watch the link itself and see nothing.
        follow_symlink=root.is_symlink(),
    )


class _Handler(FileSystemEventHandler):
    """watchdog calls the `on_<event type>` method; `EVENTS` (the schedule's `event_filter`)
    keeps the others (opens, reads, folder mtime changes) from being delivered at all."""

    EVENTS: tuple[type[FileSystemEvent], ...] = (
        FileCreatedEvent,
        FileModifiedEvent,
        FileClosedEvent,
        FileAttribEvent,  # a chmod that makes a file readable must be noticed
        FileMovedEvent,
        FileDeletedEvent,
        DirCreatedEvent,
        DirMovedEvent,
        DirDeletedEvent,
    )

    def __init__(self, watcher: Watcher, root: Path) -> None:
        self._watcher = watcher
        self._root = root

    def _file(self, event: FileSystemEvent, path: bytes | str) -> None:
        if not event.is_directory:
            self._watcher.notice(Path(os.fsdecode(path)), self._root)

    def _folder_arrived(self, path: bytes | str) -> None:
        # A folder created or moved in brings files that never had events of their own.
        folder = Path(os.fsdecode(path))
        self._watcher.refuse_if_named_like_input(folder, self._root)
        self._watcher.scan_folder(folder, self._root)

    def on_created(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._folder_arrived(event.src_path)
        else:
            self._file(event, event.src_path)

    def on_modified(self, event: FileSystemEvent) -> None:
        self._file(event, event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        # IN_CLOSE_WRITE: the writer is done with the file (a local file system tells us so).
        if not event.is_directory:
            self._watcher.closed(Path(os.fsdecode(event.src_path)))
        self._file(event, event.src_path)

    def on_attrib(self, event: FileSystemEvent) -> None:
        self._file(event, event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._folder_arrived(event.dest_path)
        else:
            self._file(event, event.dest_path)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if Path(os.fsdecode(event.src_path)) == self._root:
            # The root itself went away; its watch is dead even if a folder of the same name
            # (and inode number) comes back.
            self._watcher.root_lost(self._root)


class Watcher:
    """Feeds settled candidate files to `on_settled(path, root)`; thread-safe."""

    def __init__(
        self,
        settings: WatchSettings,
        on_settled: Callable[[Path, Path], None],
        *,
        is_known: Callable[[Path, os.stat_result], bool] = lambda path, st: False,
        on_refused: Callable[[Path, str], None] = lambda path, reason: None,
        on_noticed: Callable[[list[Path], Path], None] = lambda paths, root: None,
        on_gone: Callable[[Path], None] = lambda path: None,
        observer_factory: Callable[[], BaseObserver] | None = None,
        fallback_factory: Callable[[], BaseObserver] | None = None,
        clock: Clock | None = None,
        mountinfo: Callable[[], str | None] = lambda: None,
        network_poll_seconds: float = NETWORK_POLL_SECONDS,
        settle_for: Callable[[Path], float] | None = None,
    ) -> None:
        self.settings = settings
        self._on_settled = on_settled
        self._is_known = is_known
        self._on_refused = on_refused
        self._on_noticed = on_noticed
        self._on_gone = on_gone
        self.on_not_included: Callable[[Path, Path], None] = lambda path, root: None
        self._clock = clock or SystemClock()
        self._pending: dict[Path, tuple[Path, Pending | None, float]] = {}
        # Files their writer closed (IN_CLOSE_WRITE), with their size and mtime then.
        self._closed: dict[Path, tuple[int, int]] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self._observer: BaseObserver = (observer_factory or Observer)()
        self._polling_factory = fallback_factory or (
            lambda: PollingObserver(timeout=POLLING_SECONDS)
        )
        self._observers: list[BaseObserver] = []
        self._network_observer: BaseObserver | None = None
        self._network_poll_seconds = network_poll_seconds
        self._thread = threading.Thread(target=self._check_loop, name="settle", daemon=True)
        self.warned_symlinks: set[Path] = set()
        self.warned_dirs: set[Path] = set()
        # Settle time per candidate (`[[watch.folder]] settle_seconds`), else the default.
        self._settle = settle_for or (lambda path: self.settings.settle_seconds)
        self._keeper = RootKeeper(
            list(settings.paths),
            schedule=self._schedule,
            unschedule=lambda handle: handle[0].unschedule(handle[1]),
            on_appeared=lambda root: self.scan_folder(root, root),
            mountinfo=mountinfo,
        )

    @property
    def roots(self) -> list[Path]:
        return self._keeper.roots

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._observer.start()
        self._observers.append(self._observer)
        self._keeper.check(announce=False)  # the daemon's first scan looks inside them
        self._thread.start()

    def check_roots(self) -> bool:
        """Re-check the roots (missing, appeared, replaced); new ones are scanned."""
        return self._keeper.check()

    def set_roots(self, roots: list[Path]) -> None:
        """Watch these roots from now on (a reloaded config); new ones are scanned."""
        self._keeper.set_roots(roots)
        self._keeper.check()

    def root_lost(self, root: Path) -> None:
        """The root's folder was deleted: the next `check_roots` watches whatever is there."""
        self._keeper.lost(root)

    def root_statuses(self) -> list[dict[str, Any]]:
        return self._keeper.statuses()

    def _schedule(self, root: Path, network: bool) -> tuple[BaseObserver, ObservedWatch]:
        observer = self._polling_observer() if network else self._observer
        handler = _Handler(self, root)
        try:
            return observer, _watch(observer, handler, root, self.settings.recursive)
        except OSError as exc:
            if network or observer is not self._observers[0]:
                raise
            # Usually the inotify watch limit on a very large tree. Polling is slower and costs
            # some CPU, but a daemon that keeps working beats one that exits.
            log.error(
                "inotify is not available for the watch folders; falling back to polling. "
                "Raise the limit with: sysctl fs.inotify.max_user_watches=524288",
                error=str(exc),
            )
            self._observer = self._polling_factory()
            self._observer.start()
            self._observers.append(self._observer)
            return self._observer, _watch(self._observer, handler, root, self.settings.recursive)

    def _polling_observer(self) -> BaseObserver:
        """For roots on network file systems, where inotify misses other machines' writes."""
        if self._network_observer is None:
            self._network_observer = PollingObserver(timeout=self._network_poll_seconds)
            self._network_observer.start()
            self._observers.append(self._network_observer)
        return self._network_observer

    def scan(self) -> int:
        """Queue every candidate already present that the journal does not know unchanged."""
        found = 0
        for status in self._keeper.statuses():
            if status["watched"]:
                root = Path(status["path"])
                found += self.scan_folder(root, root)
        return found

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            if observer.is_alive():
                observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def pending_count(self) -> int:
        with self._wake:
            return len(self._pending)

    # -- intake ---------------------------------------------------------------------------------

    def scan_folder(self, folder: Path, root: Path) -> int:
        fresh: list[Path] = []
        walker: Iterable[tuple[str, list[str], list[str]]] = os.walk(folder)
        for dirpath, dirnames, filenames in walker:
            if not self.settings.recursive and Path(dirpath) != root:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in dirnames:
                self.refuse_if_named_like_input(Path(dirpath) / name, root)
            for name in filenames:
                path = Path(dirpath) / name
                if _ignored(self, path, root):
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                if self._is_known(path, st):
                    continue
                if path.is_symlink() and not self._symlink_allowed(path, root):
                    continue
                fresh.append(path)
        # Journaled in one go (a first scan may find thousands), before any can settle.
        with self._wake:
            new = [p for p in fresh if p not in self._pending]
        if new:
            self._on_noticed(new, root)
        for path in fresh:
            self._add_pending(path, root)
        return len(fresh)

    def refuse_if_named_like_input(self, folder: Path, root: Path) -> None:
        if ignore_reason(folder, root, self.settings) is None and folder not in self.warned_dirs:
            self.warned_dirs.add(folder)
            self._on_refused(
                folder,
                f"{folder} is a folder, not a file; zip it (or rename it) to upload its contents",
            )

    def notice(self, path: Path, root: Path) -> None:
        """Something happened to `path`: (re)start its settle clock."""
        if _ignored(self, path, root):
            return
        if path.is_symlink() and not self._symlink_allowed(path, root):
            return
        with self._wake:
            new = path not in self._pending
        if new:
            # The daemon journals the sighting (a status row from the first event on) before
            # the file can settle; once per settle, not once per write event.
            self._on_noticed([path], root)
        self._add_pending(path, root)

    def _add_pending(self, path: Path, root: Path) -> None:
        with self._wake:
            if self._stopped:
                return
            now = self._clock.monotonic()
            existing = self._pending.get(path)
            if existing is None:
                self._pending[path] = (root, None, now)
                self._wake.notify_all()
            else:
                # Already pending: its next look notices the change. Bursts of write events
                # must not turn into bursts of stat calls.
                known_root, pending, due = existing
                soon = now + self._settle(path)
                self._pending[path] = (known_root, pending, min(due, soon))

    def closed(self, path: Path) -> None:
        """The file's writer closed it (inotify's IN_CLOSE_WRITE): remember it as it was then."""
        try:
            st = path.stat()
        except OSError:
            return
        with self._wake:
            if len(self._closed) >= MAX_CLOSED_REMEMBERED:
                self._closed.pop(next(iter(self._closed)))
            self._closed[path] = (st.st_size, st.st_mtime_ns)

    def closed_unchanged(self, path: Path, st: os.stat_result) -> bool:
        """Was `path` closed by its writer, unchanged since (then an incomplete file is broken)?
        Never on polled roots (network shares): no close event comes there."""
        with self._wake:
            return self._closed.get(path) == (st.st_size, st.st_mtime_ns)

    def recheck_later(self, path: Path, root: Path, after_seconds: float) -> None:
        """Look at `path` again later (an incomplete file that may still be written)."""
        with self._wake:
            if self._stopped:
                return
            self._pending[path] = (root, None, self._clock.monotonic() + after_seconds)
            self._wake.notify_all()

    def _symlink_allowed(self, path: Path, root: Path) -> bool:
        target = path.resolve()
        if self.settings.follow_symlinks or target.is_relative_to(root.resolve()):
            return True
        if path not in self.warned_symlinks:
            self.warned_symlinks.add(path)
            self._on_refused(
                path,
                f"{path} is a symlink to {target}, outside the watch root {root}; it is not "
                "followed (set [watch] follow_symlinks = true to upload such files)",
            )
        return False

    # -- the settle checker ---------------------------------------------------------------------

    def _check_loop(self) -> None:
        while True:
            with self._wake:
                if self._stopped:
                    return
                if not self._pending:
                    self._wake.wait()  # idle: sleep until an event arrives
                    continue
                now = self._clock.monotonic()
                due = [(p, v) for p, v in self._pending.items() if v[2] <= now]
                if not due:
                    self._wake.wait(timeout=min(v[2] for v in self._pending.values()) - now)
                    continue
            settled = self._advance(due, now)
            for path, root in settled:
                try:
                    self._on_settled(path, root)
                except Exception:  # the daemon must keep running whatever one file does
                    log.exception("handling a settled file failed; will look again", path=str(path))
                    self.recheck_later(path, root, RECHECK_AFTER_ERROR_SECONDS)

    def _advance(
        self, due: list[tuple[Path, tuple[Path, Pending | None, float]]], now: float
    ) -> list[tuple[Path, Path]]:
        settled: list[tuple[Path, Path]] = []
        for path, (root, pending, _) in due:
            try:
                st = path.stat()
            except FileNotFoundError:
                with self._wake:
                    self._pending.pop(path, None)
                    self._closed.pop(path, None)
                self._on_gone(path)
                continue
            except OSError as exc:
                log.warning("cannot stat a candidate; will retry", path=str(path), error=str(exc))
                with self._wake:
                    self._pending[path] = (root, None, now + 30)
                continue
            state, done = settle_step(pending, st.st_size, st.st_mtime_ns, now, self._settle(path))
            with self._wake:
                current = self._pending.get(path)
                if current is None or current[2] > now:
                    continue  # a newer event or a recheck was scheduled meanwhile
                if done:
                    del self._pending[path]
                    settled.append((path, root))
                else:
                    next_look = state.stable_since + self._settle(path)
                    self._pending[path] = (root, state, max(next_look, now))
        return settled
