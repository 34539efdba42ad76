"""Status tells the whole truth: the daemon journals every noticed file from its first event."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal

from .helpers import MIB, make_mp4, make_zip, wait_for
from .test_daemon import Running, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=5, chunk_size=5 * MIB, processing_delay_seconds=0.5)


def test_a_settling_file_has_a_row_at_once(emulator: EmulatorServer, tmp_path: Path) -> None:
    settings = settings_for(
        emulator, tmp_path, watch={"paths": [tmp_path / "inbox"], "settle_seconds": 60}
    )
    with Running(settings):
        make_mp4(settings.watch.paths[0] / "clip.mp4", 1 * MIB)
        wait_for(lambda: "clip.mp4" in rows(settings), 10, "a row for the settling file")
        row = rows(settings)["clip.mp4"]
    assert row["phase"] == "settling" and "60 s" in str(row["reason"])
    assert row["input_data_format"] == "video" and row["eid"] is None


def test_a_half_written_zip_is_listed_with_phase_and_reason(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    whole = make_zip(tmp_path / "whole.zip", images=4, image_bytes=64 * 1024)
    data = whole.read_bytes()
    target = settings.watch.paths[0] / "scan.zip"

    def incomplete_row() -> dict[str, object]:
        row = rows(settings).get("scan.zip", {})
        return row if row.get("phase") == "incomplete" else {}

    def rechecked(after: object) -> bool:
        return bool(incomplete_row()) and incomplete_row()["updated_at"] != after

    # A copy in progress: its writer keeps the file open (a file its writer closed while it is
    # still incomplete is broken, not being copied: tests/test_first_hour.py).
    writer = target.open("wb")
    with capture_logs() as logs, Running(settings):
        writer.write(data[: len(data) // 2])
        writer.flush()
        wait_for(lambda: bool(incomplete_row()), 15, "the half-written zip's row")
        first = incomplete_row()
        assert "zip" in str(first["reason"]) or "directory" in str(first["reason"])
        # Looked at again (and again) while nothing changes: said once, not every time.
        wait_for(lambda: rechecked(first["updated_at"]), 15, "a recheck")
        second = incomplete_row()
        wait_for(lambda: rechecked(second["updated_at"]), 15, "another recheck")
        assert incomplete_row()["incomplete_since"] == first["incomplete_since"]
        waiting = [e for e in logs if e["event"] == "waiting for the file to be complete"]
        assert len(waiting) == 1

        writer.write(data[len(data) // 2 : len(data) * 3 // 4])  # progress: said again
        writer.flush()
        wait_for(
            lambda: incomplete_row().get("incomplete_since", "") > str(first["incomplete_since"]),
            15,
            "the change to be seen",
        )
        waiting = [e for e in logs if e["event"] == "waiting for the file to be complete"]
        assert len(waiting) == 2

        writer.write(data[len(data) * 3 // 4 :])  # complete now: uploaded, followed, fetched
        writer.close()
        wait_for(lambda: rows(settings)["scan.zip"]["phase"] == "done", 30, "done")
    row = rows(settings)["scan.zip"]
    assert row["reason"] is None and row["capture_state"] == "READY"
    assert zipfile.is_zipfile(target)


def test_files_found_by_the_first_scan_are_listed_at_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator, tmp_path, watch={"paths": [tmp_path / "inbox"], "settle_seconds": 60}
    )
    for n in range(40):
        (settings.watch.paths[0] / f"clip{n:02d}.mp4").write_bytes(b"not yet")
    with Running(settings):  # ready only after the scan journaled them
        listed = rows(settings)
    assert len(listed) == 40 and {r["phase"] for r in listed.values()} == {"settling"}


def test_the_periodic_rescan_finds_what_no_event_announced(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    settings = settings_for(
        emulator, tmp_path, watch={"paths": [inbox], "settle_seconds": 0.3, "rescan_seconds": 0.5}
    )
    make_mp4(inbox / "clip.mp4", 1 * MIB)
    with Running(settings, root_check_seconds=0.2):
        wait_for(lambda: rows(settings).get("clip.mp4", {}).get("phase") == "done", 30, "done")
        # The journal forgets the file behind the daemon's back: no event will ever say so.
        with Journal(settings.journal.path) as journal:
            journal.forget_paths([str(inbox / "clip.mp4")])
        assert "clip.mp4" not in rows(settings)
        wait_for(lambda: "clip.mp4" in rows(settings), 15, "the rescan to find it again")
