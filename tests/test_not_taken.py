"""Nothing in a watch folder is ignored in silence (issue 31): a file the daemon does not take
for its type gets a `rejected` row saying why, once; a QuickTime .mov names the ffmpeg command
that remuxes it to MP4 without re-encoding; sidecars and hidden files stay quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer

from .helpers import make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


def test_every_file_gets_a_row_or_a_reason(emulator: EmulatorServer, tmp_path: Path) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    (inbox / "readme.txt").write_text("shot on tuesday")  # there before the start
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "readme.txt" in status(config), 30, "the text file's row")
        make_zip(inbox / "scan.zip")
        (inbox / "scan.zip.teleport.toml").write_text('name = "Scan"\n')  # a sidecar: an input's
        (inbox / ".DS_Store").write_bytes(b"\0")  # hidden: quiet
        (inbox / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not zipped")
        wait_for(lambda: "photo.jpg" in status(config), 30, "the loose photo's row")
        wait_for(
            lambda: status(config).get("scan.zip", {}).get("capture_state") == "READY",
            30,
            "the capture",
        )
        rows = status(config)
    finally:
        assert daemon.stop() == 0
    assert set(rows) == {"readme.txt", "photo.jpg", "scan.zip"}
    for name in ("readme.txt", "photo.jpg"):
        assert rows[name]["phase"] == "rejected"
        assert rows[name]["reason"].startswith(str(inbox / name))
        assert "not a capture (zip or mp4 wanted)" in rows[name]["reason"]
    log = daemon.log.read_text()
    assert log.count('"not taken"') == 2, "once per file"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the .mov")
def test_a_quicktime_movie_names_the_command_that_remuxes_it(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    movie = tmp_path / "IMG_0042.MOV"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(movie),
        ],
        check=True,
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: '"watching"' in daemon.log.read_text(), 30, "the daemon")
        shutil.copyfile(movie, inbox / movie.name)
        wait_for(lambda: movie.name in status(config), 30, "the movie's row")
        row = status(config)[movie.name]
    finally:
        assert daemon.stop() == 0
    assert row["phase"] == "rejected"
    command = str(row["reason"]).split(": ffmpeg ", 1)[1]
    assert command.startswith(f"-i {inbox / movie.name} -c copy -movflags +faststart")
    # The command does what it says: ffmpeg accepts it and makes an MP4 of the same stream.
    out = inbox / "IMG_0042.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", *command.split()], check=True)
    assert out.read_bytes()[4:8] == b"ftyp"
