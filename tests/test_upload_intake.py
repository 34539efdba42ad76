"""`upload` goes through the daemon's intake (issue 10, line 11): a broken file exits 1 with
the sentence the daemon would journal, and nothing is created on the account."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer

from .helpers import make_zip


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(30_000))


def _no_images(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no pictures")


def _truncated(path: Path) -> None:
    data = make_zip(path.with_name("whole.zip")).read_bytes()
    path.write_bytes(data[: len(data) - 40])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_random_bytes, "not a zip"),
        (_no_images, "no images"),
        (_truncated, "end-of-central-directory"),
    ],
)
def test_a_broken_file_is_refused_before_anything_is_created(
    emulator: EmulatorServer, config_file: Path, tmp_path: Path, make: object, words: str
) -> None:
    broken = tmp_path / "broken.zip"
    make(broken)  # type: ignore[operator]
    good = make_zip(tmp_path / "good.zip")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "teleport_sync",
            "--config",
            str(config_file),
            "upload",
            str(broken),
            str(good),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert words in result.stderr and str(broken) in result.stderr
    # The good file beside it still goes; the broken one made no capture.
    assert [c.name for c in emulator.backend.captures.values()] == ["good.zip"]
