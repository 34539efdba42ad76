"""Intake: what the daemon does with a file the watcher says has settled.

Each settled candidate is ignored (not an input), rejected (invalid, unreadable, a second path
to a file already journaled, refused by the watcher), left waiting (its format is not complete
yet) or journaled and queued for upload.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..events.emitter import EventHub
from ..inputs import (
    UNREADABLE,
    InputProblem,
    capture_name,
    check_complete,
    identify,
    input_format_for,
    not_a_capture,
    same_file_as,
    settled_reason,
)
from ..journal import Journal, JournalRowError, UploadState
from ..logging import get_logger
from ..models import FileIdentity
from ..watch.folders import SIDECAR_SUFFIX, capture_plan, effective
from ..watch.sightings import Sightings

log = get_logger("teleport_sync.daemon")


class Intake:
    """Settled files into journal rows and the upload queue."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        journal: Journal,
        sightings: Sightings,
        events: EventHub,
        *,
        enqueue: Callable[[int], None],
        next_attempt: Callable[[int], str],
        recheck_later: Callable[[Path, Path, float], None],
        closed_unchanged: Callable[[Path, os.stat_result], bool] = lambda path, st: False,
    ) -> None:
        # A getter: a reloaded config (SIGHUP) applies to the next file at once.
        self._settings = settings
        self.journal = journal
        self.sightings = sightings
        self.events = events
        self._enqueue = enqueue
        self._next_attempt = next_attempt
        self._recheck_later = recheck_later
        # Did the file's writer close it, unchanged since (the watcher knows, from inotify)?
        self._closed_unchanged = closed_unchanged
        # Why a file is held instead of taken: another journal's live claim on its folder.
        self.held_by_claim: Callable[[Path], str | None] = lambda path: None

    def take(self, path: Path, root: Path) -> None:
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
        name = capture_name(effective(self._settings(), path).name_template, path)
        quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        try:
            record = self.journal.by_path(str(path))
        except JournalRowError as exc:
            log.error("not uploaded", path=str(path), reason=str(exc))
            return
        if (
            record is not None
            and _same_stat(record.identity, quick)
            and record.upload_state in (UploadState.UPLOADED, UploadState.REJECTED)
        ):
            self.sightings.ended(path)
            return  # nothing new (a touch that changed nothing, a repeated event)
        claimed = self.held_by_claim(path)
        if claimed is not None:
            self.journal.reject(str(path), quick, fmt.value, name, claimed)
            self.sightings.ended(path)
            log.warning("held: another journal watches this folder", path=str(path))
            return
        self._take_changed(path, root, st, quick, (fmt.value, name))

    def _take_changed(
        self,
        path: Path,
        root: Path,
        st: os.stat_result,
        quick: FileIdentity,
        what: tuple[str, str],
    ) -> None:
        """A file new to the journal, or changed since: check it whole, then journal and queue."""
        fmt, name = what
        try:
            completeness = check_complete(path)
        except OSError as exc:
            why = UNREADABLE if isinstance(exc, PermissionError) else f"cannot read: {exc}"
            self.reject(path, quick, fmt, name, why, retry=True, root=root)
            return
        if completeness.state == "invalid":
            self.reject(path, quick, fmt, name, completeness.reason)
            return
        if completeness.state == "incomplete":
            self._wait_for_complete(path, root, st, completeness.reason, what)
            return
        try:
            identity = identify(path)
            name = capture_plan(self._settings(), path)[0]  # a bad sidecar rejects the input
        except InputProblem as exc:
            self.reject(path, quick, fmt, name, str(exc), retry=exc.retryable, root=root)
            return
        twin = same_file_as(path, identity, self.journal.paths_of_inode(st.st_dev, st.st_ino))
        if twin is not None:
            why = f"the same file as {twin} (a symlink or hard link to it), which is uploaded once"
            self.reject(path, quick, fmt, name, why)
            return
        record = self.journal.register(str(path), identity, fmt, name)
        self.sightings.ended(path)
        if record.identity == identity and record.upload_state in (
            UploadState.UPLOADED,
            UploadState.REJECTED,
        ):
            return
        self._enqueue(record.id)

    def _wait_for_complete(
        self, path: Path, root: Path, st: os.stat_result, reason: str, what: tuple[str, str]
    ) -> None:
        """Not complete yet: look again later; give up once it stopped changing for long."""
        settings = self._settings()
        if self._closed_unchanged(path, st):
            # Its writer closed it and it has settled: nothing more is coming. One message says
            # so (not "waiting" first), and not with the reason's guess that it is still copying.
            quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
            self.reject(
                path,
                quick,
                *what,
                f"{settled_reason(reason)}, and the program that wrote it has "
                "closed it: it is broken, not still being copied (write or copy it again: a "
                "changed file is looked at again)",
            )
            return
        waited = self.sightings.incomplete(path, root, st, reason)
        if waited >= settings.watch.incomplete_timeout_seconds:
            quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
            self.reject(
                path,
                quick,
                *what,
                f"{reason}; it has not changed for {int(waited)} s, so it is treated as broken "
                "(rewrite or re-copy the file to try again)",
            )
            return
        delay = max(1.0, min(30.0, settings.watch.settle_seconds * 2))
        self._recheck_later(path, root, delay)

    def not_included(self, path: Path, root: Path) -> None:
        """A file the watch rules leave out by its type: a `rejected` row saying why, once per
        path (nothing in a watch folder is ignored in silence). Sidecars are inputs' settings."""
        path = path.absolute()
        if path.name.endswith(SIDECAR_SUFFIX):
            return
        try:
            if self.journal.by_path(str(path)) is not None:
                return
            st = path.lstat()
        except (OSError, JournalRowError):
            return
        if not stat.S_ISREG(st.st_mode):
            return
        why = not_taken_reason(path, self._settings().watch.include)
        quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        self.journal.reject(str(path), quick, NOT_AN_INPUT, path.name, why)
        if path.suffix.lower() in QUICKTIME_SUFFIXES:
            self.events.file_rejected(path)  # a capture someone meant to upload
        log.warning("not taken", path=str(path), reason=why)

    def refused(self, path: Path, reason: str) -> None:
        """The watcher will not take `path` (a symlink out of the root, a folder named .zip)."""
        try:
            st = path.lstat()
            fmt = input_format_for(path).value
        except (OSError, InputProblem):
            return
        quick = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        name = capture_name(effective(self._settings(), path).name_template, path)
        self.reject(path, quick, fmt, name, reason)

    def reject(
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
            if record.upload_state in (UploadState.UPLOADED, UploadState.REJECTED):
                # A new version of a finished (or refused) file: it starts over (the uploaded
                # capture is kept) and then waits; a finished row cannot be failed as it is.
                record = self.journal.restart(record.id, identity, fmt, name, "changed")
            self.journal.mark_failed(record.id, message, self._next_attempt(record.attempts + 1))
        else:
            self.journal.reject(str(path), identity, fmt, name, message)
            self.events.file_rejected(path)
        log.error("not uploaded", path=str(path), reason=message)


# `input_data_format` of a row for a file that is not an input at all.
NOT_AN_INPUT = "none"
QUICKTIME_SUFFIXES = (".mov", ".qt")


def not_taken_reason(path: Path, include: list[str]) -> str:
    """Why a file of this type is not uploaded, and what would make it one."""
    suffix = path.suffix.lower()
    if suffix in QUICKTIME_SUFFIXES:
        mp4 = shlex.quote(str(path.with_suffix(".mp4")))
        # Only reached when `[watch] include` leaves *.mov out: say so, not "not an MP4".
        return (
            f"{path}: a QuickTime movie, not taken: [watch] include ({', '.join(include)}) "
            f'leaves it out; add "*.mov" to it, or remux it without re-encoding and drop the '
            f".mp4 here: ffmpeg -i {shlex.quote(str(path))} -c copy -movflags +faststart {mp4}"
        )
    if suffix in (".zip", ".mp4"):
        return f"{path}: not taken: [watch] include ({', '.join(include)}) leaves it out"
    return f"{not_a_capture(path)}; it is left as it is"


def _same_stat(a: FileIdentity, b: FileIdentity) -> bool:
    return (a.dev, a.inode, a.size, a.mtime_ns) == (b.dev, b.inode, b.size, b.mtime_ns)
