"""Odd inputs the daemon meets in real studios (issue 10, lines 7, 8 and 10): file names that
are not UTF-8, a journal row that cannot be read, and one file reached by two paths."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs import identify
from teleport_sync.journal import Journal

from .helpers import MIB, make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=7, chunk_size=5 * MIB, processing_delay_seconds=0.5)


def test_a_file_name_that_is_not_utf8_is_uploaded_and_shown_escaped(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    raw = os.fsencode(inbox) + b"/caf\xe9.zip"  # Latin-1, as an old camera writes it
    make_zip(Path(os.fsdecode(raw)))
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: status(config).get("caf\\xe9.zip", {}).get("capture_state") == "READY",
            30,
            "the file READY, shown with its byte escaped",
        )
        assert daemon.alive
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log.read_text(errors="replace")
    [capture] = emulator.backend.captures.values()
    assert capture.name == "caf\\xe9.zip"
    with open(raw, "rb") as original:
        assert emulator.object_bytes(capture.eid) == original.read()
    # Journaled losslessly: the row leads back to the very bytes of the name.
    with Journal(tmp_path / "journal.sqlite3") as journal:
        [record] = journal.all_files()
        assert os.fsencode(record.path) == raw


def test_an_unreadable_row_fails_that_file_with_the_fix_and_others_go_on(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    bad = make_zip(inbox / "bad.zip")
    with Journal(tmp_path / "journal.sqlite3") as journal:
        record = journal.register(str(bad), identify(bad), "bulk-images", "bad.zip")
        journal.mark_create_intent(record.id, "aaaabbbbccccdddd")
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    # Bytes that are not UTF-8 in a text column (a hand edit, a bad disk sector, an old tool).
    conn.execute("UPDATE files SET name = CAST(X'6261645fff2e7a6970' AS TEXT)")
    conn.commit()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        good = make_zip(inbox / "good.zip")
        wait_for(
            lambda: status(config).get("good.zip", {}).get("upload_state") == "uploaded",
            30,
            "the other file uploaded",
        )
        wait_for(
            lambda: status(config).get("bad.zip", {}).get("upload_state") == "rejected",
            30,
            "the bad row failed",
        )
        row = status(config)["bad.zip"]
        assert "not UTF-8" in str(row["error"]) and "DELETE FROM files" in str(row["error"])
        assert daemon.alive
    finally:
        assert daemon.stop() == 0
    assert "unexpected error" not in daemon.log.read_text()
    [capture] = emulator.backend.captures.values()
    assert emulator.object_bytes(capture.eid) == good.read_bytes()


def test_one_file_reached_by_a_symlink_and_a_hard_link_is_one_capture(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    real = make_zip(inbox / "b-real.zip")
    (inbox / "a-link.zip").symlink_to(real)
    os.link(real, inbox / "c-hard.zip")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:

        def settled() -> bool:
            rows = status(config)
            states = sorted(r["upload_state"] for r in rows.values())
            return states == ["rejected", "rejected", "uploaded"]

        # Waits for the upload too: the twins are refused at once, the one file uploaded after
        # (on a loaded machine, after the daemon could have been stopped mid-upload).
        wait_for(settled, 90, "one upload and two twins refused")
    finally:
        assert daemon.stop() == 0
    rows = status(config)
    [uploaded] = [r for r in rows.values() if r["upload_state"] == "uploaded"]
    for row in rows.values():
        if row is not uploaded:
            assert f"the same file as {uploaded['path']}" in str(row["error"])
    [capture] = emulator.backend.captures.values()
    assert emulator.object_bytes(capture.eid) == real.read_bytes()
