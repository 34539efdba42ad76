"""A lost or emptied journal never silently doubles the account's captures (issue 10, line 9):
files already in a folder watched with another journal are held, with the way to release them;
files that arrive after the start are uploaded as usual."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .helpers import MIB, make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=9, chunk_size=5 * MIB, processing_delay_seconds=0.3)


def ready(config: Path, name: str) -> bool:
    return status(config).get(name, {}).get("capture_state") == "READY"


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_files_already_there_are_held_when_the_journal_is_lost(
    emulator: EmulatorServer, tmp_path: Path, loss: str
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    make_zip(inbox / "before.zip")  # present at the very first start: uploaded
    first = DaemonProcess(config, tmp_path / "first.log")
    try:
        wait_for(lambda: ready(config, "before.zip"), 30, "the first upload")
    finally:
        assert first.stop() == 0

    journal = tmp_path / "journal.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    if loss == "deleted":
        journal.unlink()
    else:
        journal.write_bytes(b"")
    make_zip(inbox / "while-stopped.zip")

    second = DaemonProcess(config, tmp_path / "second.log")
    try:
        wait_for(lambda: '"watching"' in second.log.read_text(), 30, "the second start")
        make_zip(inbox / "after.zip")
        wait_for(lambda: ready(config, "after.zip"), 30, "a new file uploaded as usual")
        rows = status(config)
    finally:
        assert second.stop() == 0
    for name in ("before.zip", "while-stopped.zip"):
        assert rows[name]["upload_state"] == "rejected"
        assert "held" in str(rows[name]["error"]) and "touch the file" in str(rows[name]["error"])
    names = sorted(c.name for c in emulator.backend.captures.values())
    assert names == ["after.zip", "before.zip"], "nothing was uploaded twice"
