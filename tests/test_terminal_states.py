"""A failed capture may be called FAILED or ERROR, in any case (issue 10, line 14): the daemon
stops following it, records the reason slug in the row's `error`, and runs its failed actions;
a capture deleted before completion makes the file start over (line 5)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.emulator.stats import Call
from teleport_sync.journal import Journal

from .helpers import MIB, make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=14, chunk_size=5 * MIB, processing_delay_seconds=0.5)


@pytest.mark.parametrize("state", ["ERROR", "error", "Failed"])
def test_error_in_any_case_is_terminal_with_its_reason(
    emulator: EmulatorServer, tmp_path: Path, state: str
) -> None:
    emulator.config.failed_state_name = state
    emulator.config.fail_processing_with = "NOT_ENOUGH_FRAMES"
    failed_dir = tmp_path / "failed"
    config, inbox = daemon_config(tmp_path, emulator)
    config.write_text(config.read_text() + f'[actions]\nfailed_dir = "{failed_dir}"\n')
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        make_zip(inbox / "thin.zip")
        wait_for(lambda: (failed_dir / "thin.zip").exists(), 30, "the failed action (a move)")
        row = status(config)["thin.zip"]
        assert row["capture_state"] == state
        assert "NOT_ENOUGH_FRAMES" in str(row["error"])
        # No longer followed: nothing is left for the poller.
        with Journal(tmp_path / "journal.sqlite3") as journal:
            assert journal.awaiting_result() == []
    finally:
        assert daemon.stop() == 0


def test_a_capture_deleted_before_completion_is_started_over_by_the_daemon(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    deleted: list[str] = []

    def delete_after_last_part(call: Call) -> None:
        done = call.kind == "put" and call.eid and emulator.stats.successful_puts(call.eid)
        if done and sum(done.values()) == 2 and not deleted:
            deleted.append(str(call.eid))
            emulator.backend.delete(str(call.eid))  # a person deleted it in the web UI

    emulator.stats.listeners.append(delete_after_last_part)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        path = make_zip(inbox / "gone.zip", pad=6 * MIB)  # 2 parts
        wait_for(
            lambda: status(config).get("gone.zip", {}).get("capture_state") == "READY",
            60,
            "the file uploaded again and READY",
        )
    finally:
        assert daemon.stop() == 0
    row = status(config)["gone.zip"]
    assert deleted and row["eid"] != deleted[0]
    assert emulator.object_bytes(str(row["eid"])) == path.read_bytes()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    events = [m for (m,) in conn.execute("SELECT message FROM events WHERE kind = 'restarted'")]
    conn.close()
    assert any(deleted[0] in m and "gone from the account" in m for m in events)
