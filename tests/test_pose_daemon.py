"""The pose check beside the upload, in the daemon against the emulator: parts go up while it
runs, only completion (`POST /uploaded`) waits for its verdict; a hold keeps the capture
uploaded-not-completed until `approve`, or until the file changes (then its capture is deleted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from teleport_sync.control import approve
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal

from . import rooms
from .helpers import wait_for
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for

pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")

SIZE = (320, 240)
# The pictures' own rules are loosened (small rendered frames): only the pose check judges.
PREFLIGHT = {"pose": "hold", "min_short_side": 0, "min_frames": 0, "pose_seconds": 120}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("rendered")
    bare = rooms.write_set(
        rooms.furnished_room(bare=True), rooms.orbit(10), work / "bare", size=SIZE
    )
    # 20 degrees apart at 360 x 270: every view posed (fewer, smaller views leave some out).
    orbit = rooms.write_set(
        rooms.furnished_room(), rooms.orbit(18), work / "orbit", size=(360, 270)
    )
    return {
        "bare": rooms.zip_set(bare, work / "bare.zip"),
        "orbit": rooms.zip_set(orbit, work / "orbit.zip"),
    }


def drop(archive: Path, inbox: Path, name: str) -> Path:
    target = inbox / name
    partial = inbox / (name + ".part")
    shutil.copy(archive, partial)
    partial.replace(target)
    return target


def completions(emulator: EmulatorServer) -> list[str]:
    return [c.path for c in emulator.stats.snapshot() if c.path.endswith("/uploaded")]


def kinds(settings: object, path: Path) -> list[str]:
    with Journal(settings.journal.path) as journal:  # type: ignore[attr-defined]
        record = journal.by_path(str(path))
        assert record is not None
        return [kind for kind, _ in journal.events(record.id)]


def test_a_posable_set_completes_after_its_parts_and_verdict(
    emulator: EmulatorServer, tmp_path: Path, sets: dict[str, Path]
) -> None:
    settings = settings_for(emulator, tmp_path, preflight=PREFLIGHT, web={"listen": "127.0.0.1:0"})
    with Running(settings) as running:
        path = drop(sets["orbit"], settings.watch.paths[0], "orbit.zip")
        wait_for(lambda: rows(settings).get("orbit.zip", {}).get("capture_state") == "READY", 180)
        page, cloud = _console(running, "orbit.zip")
    # The console shows what Teleport will see: the sentence, and the points and camera path.
    assert "What Teleport will see" in page and "Posed 18 of 18 frames in one piece" in page
    assert len(cloud["path"]) == 18 and len(cloud["points"]) > 300
    assert all(len(p) == 6 for p in cloud["points"]) and all(len(c) == 3 for c in cloud["path"])
    row = rows(settings)["orbit.zip"]
    pose = row["preflight"]["figures"]["pose"]
    assert row["preflight"]["verdict"] == "ok", row["preflight"]["reasons"]
    assert pose["status"] == "done" and pose["posed"] == pose["frames"] == 18
    assert len(completions(emulator)) == 1
    events = kinds(settings, path)
    # The capture was made before the verdict came: the parts did not wait for the check.
    assert events.index("created") < events.index("pose-ok") < events.index("renamed")
    assert "waiting" in events


def test_a_held_set_never_completes_until_approve(
    emulator: EmulatorServer, tmp_path: Path, sets: dict[str, Path]
) -> None:
    settings = settings_for(emulator, tmp_path, preflight=PREFLIGHT, web={"listen": "127.0.0.1:0"})
    with Running(settings) as running:
        path = drop(sets["bare"], settings.watch.paths[0], "bare.zip")
        wait_for(lambda: rows(settings).get("bare.zip", {}).get("phase") == "held", 180, "held")
        page, cloud = _console(running, "bare.zip")
        assert "No frame could be posed (0 of 10)" in page and cloud is None
        assert "<strong>Left out:</strong> IMG_0001.jpg, IMG_0002.jpg" in page
        row = rows(settings)["bare.zip"]
        assert row["upload_state"] == "waiting"
        assert row["parts_done"] == row["num_parts"] and row["eid"]  # uploaded, not completed
        assert "held before completion by pre-flight" in row["reason"]
        assert "no frame could be posed (0 of 10)" in row["reason"]
        assert completions(emulator) == []
        capture = emulator.backend.captures[row["eid"]]
        assert capture.completed_at is None and emulator.backend.state_of(capture) == "CREATED"
        with Journal(settings.journal.path) as journal:
            assert approve(journal, [str(path)]) == ([str(path)], [])
        wait_for(lambda: rows(settings)["bare.zip"]["upload_state"] == "uploaded", 60, "completed")
    assert len(completions(emulator)) == 1
    assert kinds(settings, path).count("pose-hold") == 1  # approved as judged, not judged again


def test_a_held_file_that_changes_loses_its_capture_and_starts_over(
    emulator: EmulatorServer, tmp_path: Path, sets: dict[str, Path]
) -> None:
    settings = settings_for(emulator, tmp_path, preflight=PREFLIGHT)
    with Running(settings):
        inbox = settings.watch.paths[0]
        drop(sets["bare"], inbox, "scan.zip")
        wait_for(lambda: rows(settings).get("scan.zip", {}).get("phase") == "held", 180, "held")
        held_eid = rows(settings)["scan.zip"]["eid"]
        drop(sets["orbit"], inbox, "scan.zip")  # the operator reshoots it
        wait_for(lambda: rows(settings)["scan.zip"].get("capture_state") == "READY", 180)
        wait_for(lambda: held_eid not in emulator.backend.captures, 30, "the held capture deleted")
    row = rows(settings)["scan.zip"]
    assert row["eid"] != held_eid
    assert row["preflight"]["figures"]["pose"]["posed"] == 18
    assert len(completions(emulator)) == 1


def test_a_held_file_that_is_forgotten_loses_its_capture_and_is_never_completed(
    emulator: EmulatorServer, tmp_path: Path, sets: dict[str, Path]
) -> None:
    settings = settings_for(emulator, tmp_path, preflight=PREFLIGHT)
    config = tmp_path / "forget.toml"
    inbox = settings.watch.paths[0]
    config.write_text(
        f'[journal]\npath = "{settings.journal.path}"\n[watch]\npaths = ["{inbox}"]\n'
    )
    with Running(settings) as running:
        path = drop(sets["bare"], settings.watch.paths[0], "gone.zip")
        wait_for(lambda: rows(settings).get("gone.zip", {}).get("phase") == "held", 180, "held")
        held_eid = rows(settings)["gone.zip"]["eid"]
        path.unlink()  # the operator gives the take up: out of the folder, out of the journal
        forgot = run_cli("--config", str(config), "forget", "--force", str(path))
        assert forgot.returncode == 0, forgot.stderr
        assert "forgot 1 row(s)" in forgot.stdout
        wait_for(lambda: held_eid not in emulator.backend.captures, 60, "the held capture deleted")
        assert running.thread.is_alive()  # the daemon kept running
    assert "gone.zip" not in rows(settings)
    assert completions(emulator) == []  # never completed, so never paid for


def _console(running: Running, name: str) -> tuple[str, dict | None]:
    """The capture page of `name` in the console, and its pose view's data (None: 404)."""
    import re

    import httpx

    with httpx.Client(base_url=str(running.daemon.web_url), timeout=10) as http:
        listing = http.get("/files").text.replace("<wbr>", "")  # break hints in long names
        found = re.search(rf'href="/files/(\d+)"[^>]*>[^<]*{re.escape(name)}', listing)
        assert found, listing
        page = http.get(f"/files/{found.group(1)}").text
        cloud = http.get(f"/files/{found.group(1)}/pose.json")
        return page, (cloud.json() if cloud.status_code == 200 else None)
