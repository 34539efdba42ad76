"""One writer per journal (issue 10, lines 1, 2 and 13): a second `run` or an `upload` beside a
running daemon is refused with exit 2, naming the holder's pid; `status` still works; a journal
that cannot be written stops the daemon at start with the path and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .helpers import MIB, make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=21, chunk_size=5 * MIB, processing_delay_seconds=1.0)


def cli(
    config: Path, *args: str, wrapper: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    return subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "teleport_sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_second_daemon_and_an_upload_beside_it_are_refused(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    first = DaemonProcess(config, tmp_path / "first.log")
    try:
        wait_for(lambda: '"watching"' in first.log.read_text(), 30, "the first daemon")
        second = cli(config, "run")
        assert second.returncode == 2, second.stderr
        assert f"pid {first.process.pid}" in second.stderr
        assert "stop that daemon first" in second.stderr

        outside = make_zip(tmp_path / "now.zip", pad=6 * MIB)
        upload = cli(config, "upload", str(outside))
        assert upload.returncode == 2, upload.stderr
        assert f"pid {first.process.pid}" in upload.stderr
        assert "drop the files into a watched folder" in upload.stderr
        assert not emulator.backend.captures, "the refused upload created nothing"

        # Read-only commands work beside the writer, and the daemon still does its work.
        make_zip(inbox / "dropped.zip")
        wait_for(
            lambda: status(config).get("dropped.zip", {}).get("upload_state") == "uploaded",
            30,
            "the daemon's upload",
        )
        assert first.alive
    finally:
        assert first.stop() == 0
    # Once the writer is gone, the next one may start.
    after = cli(config, "upload", str(tmp_path / "now.zip"))
    assert after.returncode == 0, after.stderr


def _without_root_override() -> list[str]:
    """Root writes anywhere; drop that power so permissions mean what they say."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_journal_that_cannot_be_written_stops_the_daemon_at_start(
    emulator: EmulatorServer, tmp_path: Path, what: str
) -> None:
    wrapper = _without_root_override()
    config, inbox = daemon_config(tmp_path, emulator)
    state = tmp_path / "state"
    state.mkdir()
    journal = state / "journal.sqlite3"
    config.write_text(config.read_text().replace(str(tmp_path / "journal.sqlite3"), str(journal)))
    # A journal made by an earlier run, then the permissions changed under it.
    assert cli(config, "status").returncode == 0
    seed = cli(config, "upload", str(make_zip(tmp_path / "seed.zip")))
    assert seed.returncode == 0, seed.stderr
    if what == "folder":
        (state / "journal.sqlite3.lock").unlink()
        state.chmod(0o555)
    else:
        journal.chmod(0o444)
    try:
        make_zip(inbox / "waiting.zip")
        result = cli(config, "run", wrapper=wrapper)
    finally:
        state.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert str(journal) in result.stderr and "writable" in result.stderr
    assert "Traceback" not in result.stderr
    assert [c.name for c in emulator.backend.captures.values()] == ["seed.zip"]
