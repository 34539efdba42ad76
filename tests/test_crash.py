"""Crash safety: `teleport-sync upload` as a subprocess, SIGKILLed at random moments and
right after its Nth API/S3 call, then resumed. After every kill the journal is intact, no
acknowledged part is sent again, and in the end exactly one capture holds the file's bytes.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.emulator.stats import Call

from .conftest import write_config
from .helpers import MIB, make_mp4

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # An account that already holds others' captures: the orphan window's search of the
    # listing stops at the intent's time (api.listing), and must still find the orphan.
    return EmulatorConfig(
        seed=5,
        chunk_size=5 * MIB,
        processing_delay_seconds=600,
        put_delay_seconds=0.15,
        others_captures=OTHERS,
    )


OTHERS = 5_000


@dataclass
class Kill:
    path: Path
    acknowledged: set[int]
    calls_seen: int


def start_upload(config: Path, path: Path, concurrency: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    env["TELEPORT_SYNC_UPLOAD__CONCURRENCY"] = str(concurrency)
    return subprocess.Popen(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "upload", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def journal_after_kill(journal_path: Path, path: Path) -> set[int]:
    """Integrity-check the journal a killed process left, and read the acknowledged parts."""
    if not journal_path.exists():
        return set()
    conn = sqlite3.connect(journal_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT p.number FROM parts p JOIN files f ON f.id = p.file_id WHERE f.path = ?",
            (str(path),),
        ).fetchall()
    except sqlite3.OperationalError as exc:  # the schema may not exist yet
        assert "no such table" in str(exc)
        rows = []
    finally:
        conn.close()
    return {r[0] for r in rows}


def assert_exactly_once(
    emulator: EmulatorServer, path: Path, kills: list[Kill], journal_path: Path
) -> None:
    same_name = [c for c in emulator.backend.captures.values() if c.name == path.name]
    assert len(same_name) == 1, f"{path.name}: {len(same_name)} captures on the server"
    capture = same_name[0]
    assert capture.completed_at is not None
    assert emulator.object_bytes(capture.eid) == path.read_bytes()
    calls = emulator.stats.snapshot()
    for kill in (k for k in kills if k.path == path):
        resent = {
            c.part
            for c in calls[kill.calls_seen :]
            if c.kind == "put" and c.eid == capture.eid and c.part in kill.acknowledged
        }
        assert not resent, f"parts {resent} were acknowledged before a kill and sent again"
    conn = sqlite3.connect(journal_path)
    state = conn.execute("SELECT upload_state, eid FROM files WHERE path = ?", (str(path),))
    assert state.fetchone() == ("uploaded", capture.eid)
    conn.close()


def test_random_sigkills(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    journal_path = tmp_path / "journal.sqlite3"
    rng = random.Random(20261127)
    kills: list[Kill] = []
    finished: list[Path] = []
    current = make_mp4(tmp_path / "capture-0.mp4", 40 * MIB + 12345)
    while len(kills) < 20:
        before = len(emulator.stats.snapshot())
        process = start_upload(config, current, concurrency=3)
        if rng.random() < 0.5:
            # Half the kills count from the first request the process makes, not from its
            # start: on a loaded machine start-up alone (imports) can outlast the window, and
            # then no kill would land mid-upload.
            started = time.monotonic()
            while len(emulator.stats.snapshot()) == before and process.poll() is None:
                assert time.monotonic() - started < 60, "the upload made no request"
                time.sleep(0.01)
        deadline = time.monotonic() + rng.uniform(0.2, 2.5)
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        if process.poll() is None:
            calls_seen = len(emulator.stats.snapshot())
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append(Kill(current, journal_after_kill(journal_path, current), calls_seen))
            continue
        assert process.returncode == 0, process.stderr.read().decode()  # type: ignore[union-attr]
        finished.append(current)
        current = make_mp4(tmp_path / f"capture-{len(finished)}.mp4", 40 * MIB + len(finished))

    # Let the last one finish.
    process = start_upload(config, current, concurrency=3)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    finished.append(current)

    assert sum(1 for k in kills if k.acknowledged) >= 5, "kills should land mid-upload too"
    for path in finished:
        assert_exactly_once(emulator, path, kills, journal_path)


def _kill_after_nth_call(emulator: EmulatorServer, n: int, process_holder: list[int]) -> None:
    base = len(emulator.stats.snapshot())

    def listener(call: Call) -> None:
        if call.seq - base == n and process_holder:
            os.kill(process_holder[0], signal.SIGKILL)

    emulator.stats.listeners[:] = [listener]


def test_sigkill_right_after_each_nth_call(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.config.put_delay_seconds = 0
    config = write_config(tmp_path / "config.toml", emulator)
    journal_path = tmp_path / "journal.sqlite3"
    # token, create, 3 x (upload URL + PUT), complete: 9 calls; go one past to include "none".
    for n in range(1, 11):
        path = make_mp4(tmp_path / f"nth-{n}.mp4", 12 * MIB + n)
        holder: list[int] = []
        _kill_after_nth_call(emulator, n, holder)
        calls_before = len(emulator.stats.snapshot())
        process = start_upload(config, path, concurrency=1)
        holder.append(process.pid)
        process.wait(timeout=60)
        killed = process.returncode == -signal.SIGKILL
        assert killed or n >= 10, f"call {n} never happened"
        kills = []
        if killed:
            kills.append(Kill(path, journal_after_kill(journal_path, path), calls_before + n))
        emulator.stats.listeners.clear()
        resumed = start_upload(config, path, concurrency=1)
        _, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, f"after a kill at call {n}: {err.decode()}"
        assert_exactly_once(emulator, path, kills, journal_path)

    # Call 2 is `POST /captures`: killed before its answer arrived, the resumed run must have
    # adopted the capture the server made (the orphan window), not created a second one.
    conn = sqlite3.connect(journal_path)
    adopted = conn.execute(
        "SELECT COUNT(*) FROM events e JOIN files f ON f.id = e.file_id "
        "WHERE f.path = ? AND e.kind = 'adopted'",
        (str(tmp_path / "nth-2.mp4"),),
    ).fetchone()[0]
    conn.close()
    assert adopted == 1
    # Every search of the listing stopped near its top: not one walk of the others' captures.
    assert 0 < emulator.stats.listings < OTHERS // 100
