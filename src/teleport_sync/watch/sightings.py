"""Files noticed but not handed to the uploader yet: journaled, so `status` lists them at once.

A file gets a sighting at its first event (`settling`), becomes `incomplete` (with the reason)
while its format is not complete, and loses the sighting once it is handed over, rejected,
ignored or gone. The time since which a file has been incomplete and unchanged is kept in the
journal, so a restart does not reset the give-up clock. Waiting is logged once per change of the
file, then only every `log_every_seconds`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..journal import Journal, JournalError
from ..logging import get_logger
from ..timestamps import seconds_since

log = get_logger("teleport_sync.daemon")

WAITING_LOG_EVERY_SECONDS = 600.0


class Sightings:
    def __init__(
        self,
        journal: Journal,
        *,
        settle_seconds: Callable[[], float],
        log_every_seconds: float = WAITING_LOG_EVERY_SECONDS,
    ) -> None:
        self.journal = journal
        self._settle_seconds = settle_seconds
        self._log_every = log_every_seconds
        # What was last logged about each incomplete file, and when.
        self._logged: dict[Path, tuple[tuple[int, int, str], float]] = {}

    def prune(self) -> None:
        """At start: sightings of files that went away while stopped (the rest are found again)."""
        for path in self.journal.sighting_paths():
            if not os.path.lexists(path):
                self.journal.drop_sighting(path)

    def noticed(self, paths: list[Path], root: Path) -> None:
        """The watcher's first look at these files since they last settled: status rows."""
        try:
            new = [str(p.absolute()) for p in paths if not self._known_as_is(p.absolute())]
            seconds = self._settle_seconds()
            self.journal.note_sightings(
                new, str(root), f"waiting until it has not changed for {seconds:g} s"
            )
        except JournalError as exc:
            log.warning("cannot journal noticed files", count=len(paths), error=str(exc))

    def _known_as_is(self, path: Path) -> bool:
        """An event on a file the journal already knows unchanged (a chmod, a touch)."""
        record = self.journal.by_path(str(path))
        if record is None:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        known = record.identity
        return (known.dev, known.inode, known.size, known.mtime_ns) == (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        )

    def ended(self, path: Path) -> None:
        """Handed over, rejected, ignored or gone: the sighting ends."""
        path = path.absolute()
        self._logged.pop(path, None)
        self.journal.drop_sighting(str(path))

    def gone(self, path: Path) -> None:
        try:
            self.ended(path)
        except JournalError as exc:
            log.warning("cannot journal a file that went away", path=str(path), error=str(exc))

    def incomplete(self, path: Path, root: Path, st: os.stat_result, reason: str) -> float:
        """Journal that `path` is not complete; returns for how long it has been so, unchanged."""
        since = self.journal.mark_incomplete(
            str(path), str(root), st.st_size, st.st_mtime_ns, reason
        )
        waited = seconds_since(since)
        seen = (st.st_size, st.st_mtime_ns, reason)
        last = self._logged.get(path)
        now = time.monotonic()
        if last is None or last[0] != seen or now - last[1] >= self._log_every:
            self._logged[path] = (seen, now)
            log.info("waiting for the file to be complete", path=str(path), reason=reason)
        return waited
