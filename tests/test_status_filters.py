"""`status --phase/--since/--path` and `forget PATH` on a year of rows (issue 32): the finished
rows a filter leaves out are never built, the ones it keeps are rendered by SQLite, and the
output is byte for byte what building every row and filtering it printed before. The filter
that printed it is kept here as it was (`_before_keeps`: `status/view.py`'s `filter_rows` and
`path_matches` before the change), so the new one is judged against it, odd names included:
folders, prefixes that are not folders, names not UTF-8, with backslashes, and with `%`, `_`
and `[` (which SQL's LIKE would take for patterns)."""

from __future__ import annotations

import fnmatch
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from teleport_sync.cli.app import EXIT_USAGE
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal, shown_path
from teleport_sync.logging import printable
from teleport_sync.status.filters import RowFilter
from teleport_sync.status.report import ReportOptions, status_json_lines, status_rows

from .conftest import write_config
from .test_cli import run_cli
from .test_status_json_rows import _finished, varied

__all__ = ["varied"]  # the fixture, used here

LATIN1_FOLDER = os.fsdecode(b"/year/\xe9t\xe9")  # a folder from an old camera: not UTF-8
ODD_NAMES = (
    "/year/100%_a.zip",  # LIKE '%100%_a.zip' would also take the next two
    "/year/100x_a.zip",
    "/year/100%Xa.zip",
    "/year/[draft] scan.zip",  # a glob's character class, as a name
    "/year/d.zip",  # what the glob `[d].zip` matches
    "/year/sub/one.zip",
    "/year/sub/deeper/two.zip",
    "/year/sub_dir/three.zip",  # `sub` is a prefix of it, not its folder
    "/year/subway.zip",
    f"{LATIN1_FOLDER}/four.zip",
    "/year/back\\slash/five.zip",
)
# Times that order differently as text and as instants (an offset), and one a year old.
TIMES = {
    "/year/100x_a.zip": "2026-11-01T10:00:00+00:00",
    "/year/100%Xa.zip": "2026-11-01T12:00:00+05:00",  # 07:00 UTC: before the one above
    "/year/sub/one.zip": "2025-12-01T00:00:00+00:00",
    "/year/plain.zip": "2026-11-01T09:30:00+00:00",
}


@pytest.fixture
def odd(varied: Path) -> Path:
    """The varied journal, with finished rows under odd names and at chosen times."""
    with Journal(varied) as journal:
        for n, path in enumerate(ODD_NAMES, start=100):
            _finished(journal, n, path)
    with sqlite3.connect(varied) as db:
        for path, at in TIMES.items():
            db.execute("UPDATE files SET updated_at = ? WHERE path = ?", (at, path))
    return varied


def _before_path_matches(row_path: str, wanted: str) -> bool:
    """`status.view.path_matches` before this change, word for word."""
    absolute = shown_path(str(Path(wanted).absolute()))
    if any(ch in wanted for ch in "*?["):
        by_name = fnmatch.fnmatch(Path(row_path).name, shown_path(wanted))
        return fnmatch.fnmatch(row_path, absolute) or by_name
    return row_path == absolute or row_path.startswith(absolute.rstrip("/") + "/")


def _before_keeps(row: dict[str, Any], phases: tuple[str, ...], since: Any, path: Any) -> bool:
    """`status.view.filter_rows` before this change, for one row."""
    if phases and row["phase"] not in phases:
        return False
    if since is not None and datetime.fromisoformat(row["updated_at"]) < since:
        return False
    return not (path is not None and not _before_path_matches(row["path"], path))


WHEN = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PATHS = (
    "/year",
    "/year/",
    "/year/sub",
    "/year/sub/",
    "/year/su",
    "/year/sub/one.zip",
    "/year/100%_a.zip",
    "/year/100_",
    "/year/[draft] scan.zip",
    "/year/*.zip",
    "*.zip",
    "*_a.zip",
    "[d]*",
    "/year/sub/*",
    "*caf*",
    LATIN1_FOLDER,
    f"{LATIN1_FOLDER}/four.zip",
    os.fsdecode(b"/year/caf\xe9.zip"),
    "/year/back\\slash",
    "/year/back\\slash.zip",
    "/year/tab\there\x7f.zip",
    "plain.zip",  # relative: below the current folder, not a name anywhere
    "/elsewhere",
)
FILTERS: list[tuple[tuple[str, ...], datetime | None, str | None]] = [
    *(((), None, path) for path in PATHS),
    (("done",), None, None),
    (("done", "failed"), None, None),
    (("failed",), None, None),
    (("queued", "settling", "uploading"), None, None),
    ((), WHEN, None),
    ((), datetime(2027, 1, 1, tzinfo=UTC), None),
    (("done",), WHEN, "/year/100%_a.zip"),
    (("done",), WHEN, "/year/*"),
    (("done", "settling"), datetime(2025, 1, 1, tzinfo=UTC), "/year/sub"),
]


def test_every_filter_prints_what_filtering_every_built_row_printed(odd: Path) -> None:
    kept_nothing: set[str] = set()
    with Journal(odd) as journal:
        for options in (ReportOptions(), ReportOptions(download_wanted=False)):
            every = status_rows(journal, options)
            assert len(every) == 19 + len(ODD_NAMES)
            for phases, since, path in FILTERS:
                expected = [
                    json.dumps(row) for row in every if _before_keeps(row, phases, since, path)
                ]
                kept = RowFilter(phases, since, (path,) if path is not None else ())
                lines = list(status_json_lines(journal, options, kept))
                assert lines == expected, (phases, since, path)  # byte for byte, in order
                if not expected:
                    kept_nothing.add(path or str(since))
    # Every other filter keeps rows (the comparison says something): these keep none.
    assert kept_nothing == {
        "/year/su",
        "/year/100_",
        "/year/[draft] scan.zip",
        "plain.zip",
        "/elsewhere",
        "2027-01-01 00:00:00+00:00",
    }


def _names(lines: list[str]) -> list[str]:
    return [json.loads(line)["path"] for line in lines]


def test_names_with_pattern_characters_match_as_text(odd: Path) -> None:
    with Journal(odd) as journal:

        def kept(path: str, *phases: str) -> list[str]:
            return _names(list(status_json_lines(journal, None, RowFilter(phases, None, (path,)))))

        # `%` and `_` are themselves, not LIKE's wildcards; a prefix is not a folder.
        assert kept("/year/100%_a.zip") == ["/year/100%_a.zip"]
        assert kept("/year/sub") == ["/year/sub/one.zip", "/year/sub/deeper/two.zip"]
        assert kept("/year/su") == []
        # With `[`, the name is a glob (as before): its class is one letter, so not itself.
        assert kept("/year/[draft] scan.zip") == []
        assert kept("[d].zip") == ["/year/d.zip"]
        # Names not UTF-8 are matched as status shows them (`\xe9`), given as the shell does.
        assert kept(LATIN1_FOLDER) == ["/year/\\xe9t\\xe9/four.zip"]
        assert kept("*caf*") == ["/year/caf\\xe9.zip"]
        assert kept("/year/back\\slash") == ["/year/back\\\\slash/five.zip"]
        # Times compared as instants: 12:00+05:00 is before 08:00+00:00 (not as text).
        since = RowFilter((), datetime(2026, 11, 1, 8, 0, tzinfo=UTC), ("/year/100*",))
        assert _names(list(status_json_lines(journal, None, since))) == [
            "/year/100%_a.zip",  # changed now
            "/year/100x_a.zip",
        ]


def test_the_cli_filters_and_the_table_agree_with_the_reference(
    odd: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)  # its journal: `odd`
    with Journal(odd) as journal:
        every = status_rows(journal, ReportOptions())
    for args, phases, path in (
        (("--path", "/year/sub"), (), "/year/sub"),
        (
            ("--phase", "done", "--phase", "failed", "--path", "*_a.zip"),
            ("done", "failed"),
            "*_a.zip",
        ),
        (("--since", "2026-11-01T08:00", "--phase", "done"), ("done",), None),
    ):
        since = WHEN if "--since" in args else None
        expected = [row for row in every if _before_keeps(row, phases, since, path)]
        listed = run_cli("--config", str(config), "status", "--json", *args)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == expected and expected, args
        table = run_cli("--config", str(config), "status", *args, env={"COLUMNS": "300"})
        assert f"{len(expected)} file(s) (filtered)" in table.stdout, (args, table.stdout)
        for row in expected:
            assert printable(Path(row["path"]).name) in table.stdout  # as the table shows it


def test_an_empty_path_is_refused_rather_than_read_as_everything_or_here(
    odd: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    for args in (("status", "--path", ""), ("status", "--json", "--path", "")):
        said = run_cli("--config", str(config), *args)
        assert said.returncode == EXIT_USAGE and said.stdout == "", args
        assert "--path is empty; give a file, a folder or a glob" in said.stderr


def test_forget_path_drops_that_row_and_none_named_like_it(
    odd: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)  # its journal: `odd`
    forgot = run_cli("--config", str(config), "forget", "/year/100%_a.zip", "/year/sub")
    assert forgot.returncode == 0, forgot.stderr
    assert "forgot 3 row(s)" in forgot.stdout
    with Journal(odd) as journal:
        left = {row.path for row in journal.all_files()}
    assert not {"/year/100%_a.zip", "/year/sub/one.zip", "/year/sub/deeper/two.zip"} & left
    assert {"/year/100x_a.zip", "/year/100%Xa.zip", "/year/sub_dir/three.zip"} <= left
    assert "/year/subway.zip" in left
    # Names shown with escapes are mapped back to the names on disk, and dropped.
    odd_ones = run_cli("--config", str(config), "forget", "/year/back\\slash", LATIN1_FOLDER)
    assert "forgot 2 row(s)" in odd_ones.stdout, odd_ones.stderr
    with Journal(odd) as journal:
        after = {row.path for row in journal.all_files()}
    assert left - after == {"/year/back\\slash/five.zip", f"{LATIN1_FOLDER}/four.zip"}
    unfinished = run_cli("--config", str(config), "forget", "/year/failed.zip")
    assert "kept 1" in unfinished.stdout and "forgot 0 row(s)" in unfinished.stdout
