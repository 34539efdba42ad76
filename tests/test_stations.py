"""Several stations, one account (issue 10, lines 3 and 6): each station's capture holds its
own bytes and none deletes another's, with a timed-out create, a SIGKILL in the orphan window,
a person's capture of the same name, and a server clock an hour off.

Each station is its own `teleport-sync upload` process with its own config and journal.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.emulator.stats import Call

from .conftest import write_config
from .helpers import MIB, make_zip, wait_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=8, chunk_size=5 * MIB, processing_delay_seconds=600, slow_api_seconds=3.0
    )


class Station:
    """A machine of the studio: its own folder, config and journal; the shared account."""

    def __init__(self, emulator: EmulatorServer, home: Path, name: str) -> None:
        home.mkdir()
        self.home = home
        self.config = write_config(home / "config.toml", emulator)
        self.config.write_text(
            self.config.read_text().replace("timeout_seconds = 20", "timeout_seconds = 2")
        )
        # Same file name as the other stations, different bytes.
        self.file = make_zip(home / name, images=4, pad=16 * MIB)

    def upload(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
        env["TELEPORT_SYNC_UPLOAD__CONCURRENCY"] = "1"
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "teleport_sync",
                "--config",
                str(self.config),
                "upload",
                str(self.file),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def eid(self) -> str | None:
        conn = sqlite3.connect(self.home / "journal.sqlite3")
        try:
            row = conn.execute("SELECT eid FROM files WHERE path = ?", (str(self.file),))
            return str(row.fetchone()[0])
        finally:
            conn.close()


def finish(process: subprocess.Popen[str]) -> None:
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err


def assert_each_holds_its_own(emulator: EmulatorServer, stations: list[Station]) -> None:
    eids = [s.eid() for s in stations]
    assert len(set(eids)) == len(stations), f"stations share a capture: {eids}"
    for station, eid in zip(stations, eids, strict=True):
        assert eid is not None and eid in emulator.backend.captures, "a capture was deleted"
        capture = emulator.backend.captures[eid]
        assert capture.name == station.file.name and capture.completed_at is not None
        assert emulator.object_bytes(eid) == station.file.read_bytes()
    assert len(emulator.backend.captures) == len(stations) + 1  # + the person's


def person_made(emulator: EmulatorServer, name: str) -> str:
    """A capture someone made by hand in the web UI, never uploaded: not ours to touch."""
    return emulator.backend.create(name, 1234, "bulk-images").eid


def b_in_flight(emulator: EmulatorServer, b: Station) -> subprocess.Popen[str]:
    """Station B starts first and is still uploading (CREATED) while A creates."""
    emulator.config.put_delay_seconds = 1.5
    process = b.upload()
    wait_for(
        lambda: any("tsync:" in c.name for c in emulator.backend.captures.values()),
        30,
        "station B's capture",
    )
    return process


def test_timed_out_create_beside_another_station(emulator: EmulatorServer, tmp_path: Path) -> None:
    a = Station(emulator, tmp_path / "a", "scan_001.zip")
    b = Station(emulator, tmp_path / "b", "scan_001.zip")
    theirs = person_made(emulator, "scan_001.zip")
    running_b = b_in_flight(emulator, b)
    emulator.config.slow_creates = 1  # A's create happens, its answer comes after A gave up
    running_a = a.upload()
    finish(running_a)
    finish(running_b)
    assert_each_holds_its_own(emulator, [a, b])
    assert theirs in emulator.backend.captures
    assert emulator.stats.count("api", "DELETE") == 0


def test_sigkill_in_the_orphan_window_beside_another_station(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    a = Station(emulator, tmp_path / "a", "scan_001.zip")
    b = Station(emulator, tmp_path / "b", "scan_001.zip")
    theirs = person_made(emulator, "scan_001.zip")
    running_b = b_in_flight(emulator, b)
    holder: list[int] = []

    def kill_a_after_its_create(call: Call) -> None:
        if call.method == "POST" and call.path == "/api/v1/captures" and holder:
            os.kill(holder.pop(), signal.SIGKILL)

    emulator.stats.listeners.append(kill_a_after_its_create)
    killed = a.upload()
    holder.append(killed.pid)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    emulator.stats.listeners.clear()
    finish(a.upload())  # resumes: the orphan window
    finish(running_b)
    assert_each_holds_its_own(emulator, [a, b])
    assert theirs in emulator.backend.captures
    assert emulator.stats.count("api", "DELETE") == 0


@pytest.mark.parametrize("offset", [-3600.0, 3600.0])
def test_a_server_clock_an_hour_off_leaves_no_stray_capture(
    emulator: EmulatorServer, tmp_path: Path, offset: float
) -> None:
    emulator.config.clock_offset_seconds = offset
    a = Station(emulator, tmp_path / "a", "scan_001.zip")
    emulator.config.slow_creates = 1
    finish(a.upload())
    [capture] = emulator.backend.captures.values()
    assert capture.eid == a.eid() and capture.name == "scan_001.zip"
    assert emulator.object_bytes(capture.eid) == a.file.read_bytes()
