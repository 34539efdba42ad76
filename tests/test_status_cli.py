"""`status` filters and layout, `forget`, and `captures delete` as users run them."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.models import FileIdentity

from .conftest import write_config
from .test_cli import run_cli

EID = "0123456789abcdef0123456789abcdef01234567"  # longer than most: must never fold


@pytest.fixture
def journaled(tmp_path: Path, emulator: EmulatorServer) -> Path:
    """A config and a journal holding one file in each of several phases."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path / "config.toml", emulator, extra=f'[watch]\npaths = ["{inbox}"]\n'
    )
    deep = "/studio/projects/2026/client-with-a-long-name/session-0042/captures"
    with Journal(tmp_path / "journal.sqlite3") as journal:
        done = journal.register(
            f"{deep}/done.zip", FileIdentity(1, 1, 10, 1, "a"), "bulk-images", "d"
        )
        journal.record_created(done.id, EID, 5, 2)
        journal.mark_uploaded(done.id)
        journal.record_state(done.id, "READY")
        journal.mark_action(done.id, "download", ["/results/done.ply"])
        bad = journal.register(
            f"{deep}/bad.zip", FileIdentity(1, 2, 10, 1, "b"), "bulk-images", "b"
        )
        journal.mark_rejected(bad.id, f"{deep}/bad.zip: Check [api] client_id and [watch] paths")
        journal.register("/elsewhere/queued.mp4", FileIdentity(1, 3, 10, 1, "c"), "video", "q")
        journal.note_sighting(str(inbox / "new.mp4"), str(inbox), "waiting for 5 s")
    return config


def status(config: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return run_cli("--config", str(config), "status", *args, env={"COLUMNS": str(columns)})


def test_status_filters(journaled: Path) -> None:
    every = json.loads(status(journaled, "--json").stdout)
    assert {r["phase"] for r in every} == {"done", "rejected", "queued", "settling"}
    done = json.loads(status(journaled, "--json", "--phase", "done").stdout)
    assert [Path(r["path"]).name for r in done] == ["done.zip"]
    two = json.loads(status(journaled, "--json", "--phase", "done", "--phase", "queued").stdout)
    assert len(two) == 2
    below = json.loads(status(journaled, "--json", "--path", "/studio/projects").stdout)
    assert {Path(r["path"]).name for r in below} == {"done.zip", "bad.zip"}
    globbed = json.loads(status(journaled, "--json", "--path", "*.mp4").stdout)
    assert {Path(r["path"]).name for r in globbed} == {"queued.mp4", "new.mp4"}
    assert json.loads(status(journaled, "--json", "--since", "1h").stdout) == every
    assert json.loads(status(journaled, "--json", "--since", "2999-01-01").stdout) == []
    wrong = status(journaled, "--since", "last tuesday")
    assert wrong.returncode == 2 and "--since" in wrong.stderr
    assert status(journaled, "--phase", "sleeping").returncode == 2


def test_status_reads_well_in_80_columns(journaled: Path) -> None:
    result = status(journaled)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│├└"]
    assert len(lines) > 10 and all(len(line) <= 80 for line in lines)
    assert any(EID in line for line in lines), "the capture id was folded"
    text = result.stdout
    assert "Check [api] client_id and [watch] paths" in text  # markup is not swallowed
    assert text.count("bad.zip") == 1  # the error does not repeat the path
    assert f"config: {journaled}" in text


def test_forget_finished_rows_only_unless_forced(journaled: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "new.mp4").write_bytes(b"x")
    kept = run_cli("--config", str(journaled), "forget", "/studio", "/elsewhere", str(inbox))
    assert kept.returncode == 0, kept.stderr
    assert "forgot 2 row(s)" in kept.stdout and "queued.mp4 (queued)" in kept.stdout
    left = {Path(r["path"]).name for r in json.loads(status(journaled, "--json").stdout)}
    assert left == {"queued.mp4", "new.mp4"}
    assert run_cli("--config", str(journaled), "forget").returncode == 2
    forced = run_cli("--config", str(journaled), "forget", "--before", "2999-01-01", "--force")
    assert "forgot 2 row(s)" in forced.stdout
    assert json.loads(status(journaled, "--json").stdout) == []


def test_captures_delete_confirms_on_a_terminal_and_is_journaled(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    capture = emulator.backend.create("clip.mp4", 10, "video")
    with Journal(tmp_path / "journal.sqlite3") as journal:
        record = journal.register("/in/clip.mp4", FileIdentity(1, 1, 10, 1, "f"), "video", "c")
        journal.record_created(record.id, capture.eid, 5, 1)
        journal.mark_uploaded(record.id)
        journal.record_state(record.id, "READY")
        journal.mark_action(record.id, "download", [])

    # On a terminal it asks; "n" keeps the capture.
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "teleport_sync",
            "--config",
            str(config),
            "captures",
            "delete",
            capture.eid,
        ],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.write(primary, b"n\n")
    _, err = process.communicate(timeout=60)
    os.close(primary)
    os.close(secondary)
    assert process.returncode == 1 and b"Aborted" in err
    assert capture.eid in emulator.backend.captures

    # Scripts (no terminal) and --yes do not ask.
    deleted = run_cli("--config", str(config), "captures", "delete", capture.eid)
    assert deleted.returncode == 0 and "/in/clip.mp4" in deleted.stdout
    assert capture.eid not in emulator.backend.captures
    [row] = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    assert row["capture_state"] == "DELETED" and row["phase"] == "done"
    assert "deleted" in row["reason"]


def test_commands_say_when_no_config_file_was_found(tmp_path: Path) -> None:
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "none"),
        "TELEPORT_SYNC_JOURNAL__PATH": str(tmp_path / "j.sqlite3"),
    }
    ran = run_cli("run", env=env)
    assert ran.returncode == 2 and "no config file found" in ran.stderr
    shown = run_cli("status", env=env)
    assert shown.returncode == 0 and "no config file found" in shown.stdout
