"""Which status rows `status --phase/--since/--path` and `forget PATH` keep.

One test of a row's phase, `updated_at` and shown path, asked of a built row (`keeps`) or of
the three values alone (`keeps_values`): a year of finished rows is judged from a light query
of their paths and times, and only the rows kept are built or rendered (issue 32).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..journal import shown_path

GLOB_CHARACTERS = "*?["


def path_matcher(wanted: str) -> Callable[[str], bool]:
    """Does a status row's path (as shown) match `wanted`: a file, a folder, or a glob (on the
    whole path, relative to the current folder, or on the file name)? `wanted` is given as the
    shell passed it, any bytes included. Made once, asked of every row."""
    absolute = shown_path(str(Path(wanted).absolute()))
    if any(ch in wanted for ch in GLOB_CHARACTERS):
        # What `fnmatch.fnmatch` does on POSIX (where `normcase` changes nothing), compiled once.
        whole = re.compile(fnmatch.translate(absolute)).match
        by_name = re.compile(fnmatch.translate(shown_path(wanted))).match

        def by_glob(row_path: str) -> bool:
            return whole(row_path) is not None or by_name(Path(row_path).name) is not None

        return by_glob
    folder = absolute.rstrip("/") + "/"
    # Compared as text, never as a pattern: `%`, `_` or `[` in a name are themselves.
    return lambda row_path: row_path == absolute or row_path.startswith(folder)


def path_matches(row_path: str, wanted: str) -> bool:
    """`path_matcher(wanted)(row_path)`, for one row."""
    return path_matcher(wanted)(row_path)


@dataclass(frozen=True)
class RowFilter:
    """Rows in one of `phases`, updated at or after `since`, whose path matches one of `paths`
    (each a folder or file, the row's path being it or below it, or a glob). Empty: every row."""

    phases: tuple[str, ...] = ()
    since: datetime | None = None
    paths: tuple[str, ...] = ()
    _matchers: tuple[Callable[[str], bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matchers", tuple(path_matcher(p) for p in self.paths))

    def __bool__(self) -> bool:
        return bool(self.phases or self.since is not None or self.paths)

    def wants_phase(self, phase: str) -> bool:
        return not self.phases or phase in self.phases

    def keeps_values(self, phase: str, updated_at: str, path: str) -> bool:
        """The test, on a row's phase, `updated_at` (ISO 8601) and path as `status` shows it."""
        if self.phases and phase not in self.phases:
            return False
        if self.since is not None and datetime.fromisoformat(updated_at) < self.since:
            return False
        return not self._matchers or any(matches(path) for matches in self._matchers)

    def keeps(self, row: dict[str, Any]) -> bool:
        """The test, on a status row (`status.report`'s object)."""
        return self.keeps_values(row["phase"], row["updated_at"], row["path"])

    def rows(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if self.keeps(row)]
