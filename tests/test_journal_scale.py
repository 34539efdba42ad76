"""A busy station's year: finished rows are counted, not read, by `health`, the daemon's gauges
and the console, and the `status` table shows the latest of them; nothing is lost doing so
(`--all` and `--json` still have every row, and the counts agree with reading them all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal, Source
from teleport_sync.models import FileIdentity
from teleport_sync.status.report import ReportOptions, live_counts, phase_counts, status_rows

from .conftest import write_config
from .test_cli import run_cli

FINISHED = 60  # more than the 50 the table shows


def finished_row(journal: Journal, n: int, *, state: str = "READY", download: bool = True) -> int:
    record = journal.register(
        f"/year/scan_{n:03d}.zip", FileIdentity(1, n, 10, 1, str(n)), "bulk-images", "s"
    )
    journal.record_created(record.id, f"e{n:03d}", 10, 1)
    journal.mark_uploaded(record.id)
    journal.record_state(record.id, state)
    if download:
        journal.mark_action(record.id, "download", [f"/results/{n}.ply"])
    return record.id


@pytest.fixture
def year(tmp_path: Path) -> Path:
    """A journal of finished rows and, beside them, a row in each phase that is not over."""
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        for n in range(FINISHED):
            finished_row(journal, n)
        deleted = finished_row(journal, 900, state="PROCESSING", download=False)
        journal.observe_capture(deleted, "DELETED", source=Source.USER)  # `captures delete`
        finished_row(journal, 901, download=False)  # READY, its models not fetched yet
        finished_row(journal, 902, state="FAILED", download=False)
        processing = finished_row(journal, 903, state="PROCESSING", download=False)
        journal.note_listed(processing, listed=False)
        unlisted = finished_row(journal, 904)  # READY and fetched, yet the listing lost it
        journal.note_listed(unlisted, listed=False, confirmed=True)
        finished_row(journal, 905)
        journal.note_sighting("/year/scan_905.zip", "/year", "waiting for 5 s")  # rewritten
        journal.register("/year/queued.zip", FileIdentity(1, 999, 10, 1, "q"), "bulk-images", "q")
    return path


def test_counts_without_finished_rows_agree_with_reading_every_row(year: Path) -> None:
    with Journal(year) as journal:
        for options in (ReportOptions(), ReportOptions(download_wanted=False)):
            every = status_rows(journal, options)
            rows, counts = live_counts(journal, options)
            assert counts == phase_counts(every)
            read = {Path(r["path"]).name for r in rows}
            assert not any(name.startswith("scan_0") for name in read)  # none of the finished
            in_play = {r["path"] for r in every if r["phase"] != "done"}
            assert in_play <= {r["path"] for r in rows}
        # Only the downloading row moves when downloads are not wanted.
        assert journal.finished_count() == FINISHED + 1
        assert journal.finished_count(download_wanted=False) == FINISHED + 2
        [row] = status_rows(journal, file_id=journal.by_eid("e903").id)  # type: ignore[union-attr]
        assert row["phase"] == "processing" and row["unlisted_since"]
        assert "not seen in the account's listing" in row["reason"]


def test_the_table_shows_the_latest_finished_rows_and_says_how_many_more(
    year: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    table = run_cli("--config", str(config), "status", env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    hidden = FINISHED + 1 - 50
    assert f"{hidden} older finished file(s) not shown (`status --all` lists them)" in table.stdout
    for name in ("scan_901", "scan_902", "scan_903", "scan_904", "scan_905", "queued"):
        assert name in table.stdout
    assert "scan_000.zip" not in table.stdout  # the oldest finished row
    every = run_cli("--config", str(config), "status", "--all", env={"COLUMNS": "200"})
    assert "scan_000.zip" in every.stdout and "not shown" not in every.stdout

    listed = run_cli("--config", str(config), "status", "--json")
    rows = json.loads(listed.stdout)
    assert len(rows) == FINISHED + 7
    lines = listed.stdout.strip().splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert [json.loads(line.rstrip(","))["path"] for line in lines[1:-1]] == [
        r["path"] for r in rows
    ]  # one object per line

    health = json.loads(run_cli("--config", str(config), "health", "--json").stdout)
    assert health["counts"]["done"] == FINISHED + 1 + 1  # the deleted capture's row is done


def test_forget_before_drops_a_year_of_finished_rows_with_their_history(
    year: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    forgot = run_cli("--config", str(config), "forget", "--before", "2999-01-01")
    assert forgot.returncode == 0, forgot.stderr
    assert f"forgot {FINISHED + 3} row(s)" in forgot.stdout  # finished, deleted, failed, 904
    with Journal(year) as journal:
        left = sorted(Path(r.path).name for r in journal.all_files())
        assert left == ["queued.zip", "scan_901.zip", "scan_903.zip", "scan_905.zip"]
        ids = [r.id for r in journal.all_files()]
        assert all(journal.events(i) is not None for i in ids)
        assert journal.finished_count() == 0


def test_a_start_resumes_only_ended_captures_whose_notification_is_not_journaled(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        told = finished_row(journal, 1)
        journal.mark_action(told, "notify")
        untold = finished_row(journal, 2)  # a crash between the download and the notification
        failed = finished_row(journal, 3, state="FAILED", download=False)
        journal.mark_action(failed, "failed:notify")
        failed_then_ready = finished_row(journal, 4, state="FAILED", download=False)
        journal.mark_action(failed_then_ready, "failed:notify")
        journal.record_state(failed_then_ready, "READY")  # READY's own notification is due
        resumed = {r.id for r in journal.terminal(unnotified=True)}
        assert resumed == {untold, failed_then_ready}
        assert len(journal.terminal()) == 4
        marker = journal.change_marker()
        assert journal.change_marker() == marker  # reading changes nothing
        journal.mark_action(untold, "notify")
        assert journal.change_marker() != marker


def test_a_filtered_table_shows_the_latest_finished_rows_it_keeps_and_says_how_many_more(
    year: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    done = run_cli("--config", str(config), "status", "--phase", "done", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    hidden = FINISHED + 1 - 50  # the finished rows and the deleted capture's, less those shown
    # The 50 latest finished, and scan_904 (done, but in hand: the listing lost it).
    assert "51 file(s) (filtered)" in done.stdout, done.stdout[-400:]
    assert f"{hidden} older finished file(s) not shown (`status --all` lists them)" in done.stdout
    assert "queued" not in done.stdout and "scan_000.zip" not in done.stdout
    every = run_cli("--config", str(config), "status", "--phase", "done", "--all")
    assert f"{FINISHED + 2} file(s) (filtered)" in every.stdout
    assert "not shown" not in every.stdout
    one = run_cli("--config", str(config), "status", "--path", "/year/scan_000.zip")
    assert "1 file(s) (filtered)" in one.stdout and "not shown" not in one.stdout
