"""A lost or emptied journal never silently doubles the account's captures (issue 10, line 9):
files already in a folder watched with another journal are held, with the way to release them;
files that arrive after the start are uploaded as usual."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleport_sync.config import WatchSettings
from teleport_sync.control import approve
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.status.report import status_rows
from teleport_sync.watch.lostjournal import MARKER, hold_existing

from .helpers import MIB, make_mp4, make_zip, wait_for
from .test_cli import run_cli
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
        names = sorted(c.name for c in emulator.backend.captures.values())
        assert names == ["after.zip", "before.zip"], "nothing was uploaded twice"
        # The operator checked the account: the file copied in while stopped is not there.
        approved = run_cli("--config", str(config), "approve", str(inbox / "while-stopped.zip"))
        assert approved.returncode == 0, approved.stderr
        wait_for(lambda: ready(config, "while-stopped.zip"), 30, "the approved file uploaded")
    finally:
        assert second.stop() == 0
    for name in ("before.zip", "while-stopped.zip"):
        assert rows[name]["upload_state"] == "rejected"  # DESIGN's upload_state has no "held"
        assert rows[name]["phase"] == "held"
        assert f"run `teleport-sync approve {inbox / name}`" in str(rows[name]["reason"])
        assert "cannot be known" in str(rows[name]["reason"])
    assert status(config)["before.zip"]["phase"] == "held"
    names = sorted(c.name for c in emulator.backend.captures.values())
    assert names == ["after.zip", "before.zip", "while-stopped.zip"]


def test_approve_releases_a_lost_journal_hold_after_intakes_checks(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / MARKER).write_text("0123456789abcdef\n/elsewhere/journal.sqlite3\n")
    make_zip(inbox / "chair.zip")
    make_mp4(inbox / "memo.mp4", 20_000, handler=b"soun")
    watch = WatchSettings(paths=[inbox])
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert hold_existing(journal, inbox, watch, "{name}") == 2
        rows = {Path(r["path"]).name: r for r in status_rows(journal)}
        assert {rows[n]["phase"] for n in ("chair.zip", "memo.mp4")} == {"held"}
        generation = journal.control_generation()

        approved, refused = approve(journal, [str(inbox)])
        assert approved == [str(inbox / "chair.zip")]
        assert refused == [
            f"not released: {inbox / 'memo.mp4'}: the MP4 has no video track"
            " (only audio); Teleport needs a video. Export it with a video track"
            " and drop it again"
        ]
        rows = {Path(r["path"]).name: r for r in status_rows(journal)}
        assert (rows["chair.zip"]["upload_state"], rows["chair.zip"]["phase"]) == (
            "pending",
            "queued",
        )
        assert rows["memo.mp4"]["phase"] == "rejected"
        assert journal.control_generation() > generation, "a running daemon must notice"
        assert approve(journal, [str(inbox / "chair.zip")])[0] == []  # no longer held
