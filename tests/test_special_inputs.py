"""Special files are named as what they are; `check` and the daemon agree (issue 37).

A FIFO or a character device named `x.zip` used to be "empty (0 bytes)"; a 0-byte `.mp4` was
`warn` for `check` (exit 0) and "empty" for the daemon. Real FIFOs and devices, the real
daemon with inotify, the real `check` command.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs import InputProblem, check_complete, identify
from teleport_sync.preflight import load_decoders

from .conftest import write_config
from .helpers import wait_for
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for

FIFO = "a FIFO (named pipe), not a file; only regular files are uploaded"
EMPTY = "the file is empty (0 bytes)"


def make_char_device(path: Path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        return False
    return True


def test_a_fifo_and_a_device_are_called_what_they_are(tmp_path: Path) -> None:
    fifo = tmp_path / "x.zip"
    os.mkfifo(fifo)
    assert check_complete(fifo).reason == FIFO  # not opened: that would block
    with pytest.raises(InputProblem, match="a FIFO"):
        identify(fifo)
    device = tmp_path / "y.mp4"
    if not make_char_device(device):
        pytest.skip("mknod needs CAP_MKNOD")
    assert check_complete(device).reason.startswith("a character device, not a file")


def test_the_daemon_says_what_a_fifo_is_and_that_an_empty_file_is_empty(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    inbox = settings.watch.paths[0]
    with Running(settings):
        os.mkfifo(inbox / "x.zip")
        (inbox / "empty.mp4").write_bytes(b"")
        wait_for(lambda: {"x.zip", "empty.mp4"} <= set(rows(settings)), 30, "both rows")
        wait_for(lambda: all(r["upload_state"] == "rejected" for r in rows(settings).values()), 30)
        found = rows(settings)
    assert FIFO in str(found["x.zip"]["error"])
    assert EMPTY in str(found["empty.mp4"]["error"])


@pytest.mark.skipif(not load_decoders().ok, reason="the preflight extra is not installed")
def test_check_agrees_with_the_daemon(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", emulator)
    (tmp_path / "empty.mp4").write_bytes(b"")
    os.mkfifo(tmp_path / "x.zip")
    answer = run_cli(
        "--config",
        str(config),
        "check",
        "--json",
        str(tmp_path / "empty.mp4"),
        str(tmp_path / "x.zip"),
    )
    assert answer.returncode == 1, answer.stderr  # the daemon would not upload them
    by_name = {Path(r["path"]).name: r for r in json.loads(answer.stdout)}
    assert by_name["empty.mp4"]["verdict"] == "error"
    assert EMPTY in by_name["empty.mp4"]["reasons"][0]
    assert FIFO in by_name["x.zip"]["reasons"][0]
