"""The watch roots, re-checked while the daemon runs: missing, appearing, replaced, not a folder.

A NAS mounted after the daemon started, a folder deleted and made again, a share remounted (a
new device number): each needs its watch dropped or made anew, or files go unseen while the log
says "watching". `RootKeeper.check()` compares each root with what was last seen (a stat per
root, cheap enough to run every few seconds) and reports what changed. Roots on network file
systems are scheduled on a polling observer: inotify sees no writes made by other machines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logging import get_logger
from .mounts import filesystem_type, is_network_fs

log = get_logger("teleport_sync.watcher")

# schedule(root, network) -> a handle for unschedule; both supplied by the watcher.
Schedule = Callable[[Path, bool], Any]
Unschedule = Callable[[Any], None]


@dataclass
class RootState:
    path: Path
    handle: Any = None  # the observer's watch while watched
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the watched folder
    problem: str | None = None
    network: bool = False
    fstype: str | None = None

    @property
    def watched(self) -> bool:
        return self.handle is not None


def _problem(path: Path) -> tuple[str | None, os.stat_result | None]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (
            f"{path} does not exist; create it (or mount the share): it is watched as soon "
            "as it appears",
            None,
        )
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror}); let the daemon's user read it", None
    if not os.path.isdir(path):
        return f"{path} is a file, not a folder; fix [watch] paths", None
    return None, st


class RootKeeper:
    def __init__(
        self,
        roots: list[Path],
        *,
        schedule: Schedule,
        unschedule: Unschedule,
        on_appeared: Callable[[Path], None],
        mountinfo: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._schedule = schedule
        self._unschedule = unschedule
        self._on_appeared = on_appeared
        self._mountinfo = mountinfo
        self._states: dict[Path, RootState] = {}
        self.set_roots(roots)

    @property
    def roots(self) -> list[Path]:
        return list(self._states)

    def set_roots(self, roots: list[Path]) -> None:
        """New roots are checked at the next `check`; dropped ones stop being watched now."""
        wanted = [Path(p).absolute() for p in roots]
        for path in [p for p in self._states if p not in wanted]:
            self._drop(self._states.pop(path))
        for path in wanted:
            self._states.setdefault(path, RootState(path))
        self._states = {p: self._states[p] for p in wanted}

    def lost(self, path: Path) -> None:
        """The watched folder was deleted (its watch is dead); re-checked at the next `check`."""
        state = self._states.get(path)
        if state is not None:
            state.identity = None

    def statuses(self) -> list[dict[str, Any]]:
        """The `health` contract's roots: path, watched, problem (and how it is watched)."""
        return [
            {
                "path": str(s.path),
                "watched": s.watched,
                "problem": s.problem,
                "polled": s.watched and s.network,
                "filesystem": s.fstype,
            }
            for s in self._states.values()
        ]

    def check(self, *, announce: bool = True) -> bool:
        """Look at every root once; watch, unwatch or re-watch. Returns whether any changed.

        `announce`: call `on_appeared` for roots watched now (a scan of what they hold); the
        start-up check leaves that to the daemon's own first scan.
        """
        changed = False
        for state in list(self._states.values()):
            changed |= self._check_one(state, announce)
        return changed

    def _check_one(self, state: RootState, announce: bool) -> bool:
        problem, st = _problem(state.path)
        if st is None:
            if not state.watched and state.problem == problem:
                return False
            self._drop(state)
            state.problem = problem
            log.error("watch folder unusable; not watched", path=str(state.path), problem=problem)
            return True
        identity = (st.st_dev, st.st_ino)
        if state.watched and state.identity == identity:
            return False
        replaced = state.watched
        self._drop(state)
        try:
            self._watch(state, identity)
        except OSError as exc:
            state.problem = f"{state.path} cannot be watched: {exc}"
            log.error("watch folder cannot be watched", path=str(state.path), error=str(exc))
            return True
        log.info(
            "watch folder replaced; watching the new one" if replaced else "watching folder",
            path=str(state.path),
            polled=state.network,
            filesystem=state.fstype,
        )
        if announce:
            self._on_appeared(state.path)
        return True

    def _watch(self, state: RootState, identity: tuple[int, int]) -> None:
        state.fstype = filesystem_type(state.path, self._mountinfo())
        state.network = is_network_fs(state.fstype)
        state.handle = self._schedule(state.path, state.network)
        state.identity = identity
        state.problem = None

    def _drop(self, state: RootState) -> None:
        if state.handle is not None:
            # The folder (and so its inotify watch) may already be gone.
            with contextlib.suppress(KeyError, OSError):
                self._unschedule(state.handle)
        state.handle = None
        state.identity = None
