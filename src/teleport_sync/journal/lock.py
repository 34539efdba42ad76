"""One writer per journal: an exclusive OS lock on a file beside it, holding the writer's pid.

`flock` locks belong to the open file, so the kernel drops them when the process dies however
it dies (SIGKILL, power loss): there is never a stale lock to clean up. The lock file is never
deleted (deleting it would let two processes lock two different files of one name).
Read-only commands (`status`, `health`) do not take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..private import private_dirs, tighten
from .base import JournalError


class JournalBusy(JournalError):
    """Another process writes this journal; `pid` is who (None when it cannot be read)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class JournalUnwritable(JournalError):
    """The journal (or its folder) cannot be written: nothing could be recorded."""


def lock_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".lock")


class JournalLock:
    def __init__(self, journal_path: Path) -> None:
        self.journal_path = journal_path
        self.path = lock_path(journal_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise JournalBusy (naming the holder's pid) or JournalUnwritable."""
        folder = self.path.parent
        try:
            private_dirs(folder)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            tighten(fd)
        except OSError as exc:
            raise JournalUnwritable(
                f"cannot write beside the journal {self.journal_path} ({self.path}: "
                f"{exc.strerror or exc}); make {folder} writable by the user teleport-sync "
                "runs as, or set [journal] path to a folder it can write"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid else "another process"
            raise JournalBusy(
                f"the journal {self.journal_path} is in use by teleport-sync ({who}); one "
                "process writes a journal at a time",
                pid,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(journal_path: Path) -> int | None:
    """The pid writing this journal now, or None when nobody holds its lock."""
    try:
        fd = os.open(lock_path(journal_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
