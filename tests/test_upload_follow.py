"""`upload --follow`: upload, wait for READY/FAILED, download the models; and upload's words."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs.samples import video_moov

from .conftest import write_config
from .helpers import MIB, make_mp4, make_zip, set_knobs, wait_for
from .test_cli import run_cli


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=11, chunk_size=5 * MIB, processing_delay_seconds=0.5)


def config_for(tmp_path: Path, emulator: EmulatorServer) -> Path:
    extra = f'[poll]\ninterval_seconds = 0.3\n[results]\ndir = "{tmp_path / "models"}"\n'
    return write_config(tmp_path / "config.toml", emulator, extra=extra)


def test_upload_follow_leaves_the_model_on_disk(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = config_for(tmp_path, emulator)
    scan = make_zip(tmp_path / "scan.zip", images=3)
    clip = make_mp4(tmp_path / "clip.mp4", 6 * MIB)
    result = run_cli("--config", str(config), "upload", "--follow", str(scan), str(clip))
    assert result.returncode == 0, result.stdout + result.stderr
    models = sorted((tmp_path / "models").rglob("*.ply"))
    assert len(models) == 2 and all(m.read_bytes().startswith(b"ply\n") for m in models)
    assert "READY" in result.stdout and str(models[0]) in result.stdout
    assert "file 2 of 2" in result.stderr and "MiB/s" in result.stderr
    assert "MB/s" not in result.stderr.replace("MiB/s", "")


def test_upload_follow_exits_1_on_failed(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = config_for(tmp_path, emulator)
    # Complete as an MP4 here (ftyp and moov present), but the server wants ftyp first.
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(b"\x00\x00\x00\x10free" + bytes(8) + ftyp + video_moov())
    result = run_cli("--config", str(config), "upload", "--follow", str(odd))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*.ply"))


def test_upload_without_follow_says_what_happens_next(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = config_for(tmp_path, emulator)
    result = run_cli("--config", str(config), "upload", str(make_zip(tmp_path / "a.zip")))
    assert result.returncode == 0, result.stderr
    assert "processing on the server" in result.stdout
    listed = run_cli("--config", str(config), "status", "--json")
    [row] = json.loads(listed.stdout)
    assert f"`teleport-sync download {row['eid']}`" in " ".join(result.stdout.split())


def test_ctrl_c_says_rerunning_resumes_and_exits_130(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = config_for(tmp_path, emulator)
    big = make_mp4(tmp_path / "big.mp4", 40 * MIB)
    set_knobs(emulator, put_delay_seconds=0.5)  # slow enough to be interrupted mid-upload
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "upload", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    wait_for(lambda: len(emulator.backend.captures) == 1, 30, "the capture")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()
    assert b"run the same command again to resume" in err
    again = run_cli("--config", str(config), "upload", str(big))
    assert again.returncode == 0, again.stderr
    assert len(emulator.backend.captures) == 1  # resumed, not started over
    assert "uploaded" in again.stdout
