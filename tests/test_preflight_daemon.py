"""Pre-flight inside the daemon, against the emulator: a hold keeps a file from upload until
`approve` (and is not checked again), a warn uploads with its reasons in `status`, and without
the extra the daemon uploads anyway and `health` says why pre-flight is off."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from teleport_sync.control import approve
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.status.health import health_report

from .helpers import wait_for
from .media import make_photos, make_scene, needs_tools, zip_folder
from .sink import Sink
from .test_daemon import Running, rows, settings_for

pytest.importorskip("av", reason="the preflight extra is not installed")
pytestmark = needs_tools


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene") / "scene.png")


def photo_zip(scene: Path, work: Path, name: str, count: int, *, still_after: int = 0) -> Path:
    """A zip of `count` photos walking along the scene (the last ones repeating the view
    from photo `still_after` on, when given), built outside the inbox."""
    folder = work / name / "photos"
    shot = make_photos(scene, folder, count)
    if still_after:
        for photo in shot[still_after:]:
            shutil.copy(shot[still_after - 1], photo)
    return zip_folder(folder, work / name / f"{name}.zip")


def drop(archive: Path, inbox: Path) -> Path:
    """Into the inbox whole, as a copy that is renamed into place."""
    target = inbox / archive.name
    partial = inbox / (archive.name + ".part")
    shutil.copy(archive, partial)
    partial.replace(target)
    return target


def ready(settings: object, name: str) -> bool:
    row = rows(settings).get(name)  # type: ignore[arg-type]
    return bool(row and row["capture_state"] == "READY")


def test_a_hold_keeps_the_file_back_until_approve(
    emulator: EmulatorServer, tmp_path: Path, scene: Path
) -> None:
    settings = settings_for(emulator, tmp_path, preflight={"action": "hold"})
    few = photo_zip(scene, tmp_path / "made", "few", 8)
    with Sink() as sink:
        settings.notify = settings_for(
            emulator, tmp_path, notify=[{"url": sink.url, "events": ["held"]}]
        ).notify
        with Running(settings):
            path = drop(few, settings.watch.paths[0])
            wait_for(lambda: rows(settings).get("few.zip", {}).get("phase") == "held", 30, "held")
            row = rows(settings)["few.zip"]
            assert row["upload_state"] == "pending" and row["eid"] is None
            assert "held by pre-flight: 8 images; at least 20 wanted" in str(row["reason"])
            # The hint is the command to paste, with this file's path in it.
            assert f"(teleport-sync check {path})" in str(row["reason"])
            assert str(row["reason"]).endswith(f"run: teleport-sync approve {path}")
            preflight = row["preflight"]
            assert preflight["verdict"] == "hold" and preflight["approved_at"] is None
            assert preflight["figures"]["frames"] == 8
            assert emulator.backend.captures == {}  # nothing was created: nothing cost money
            wait_for(lambda: len(sink.received) == 1, 20, "the held notification")
            note = sink.received[0].json()
            assert note["event"] == "held" and note["file_name"] == "few.zip"
            assert note["preflight"]["verdict"] == "hold"
            with Journal(settings.journal.path) as journal:
                assert approve(journal, [str(path)]) == ([str(path)], [])
            wait_for(lambda: ready(settings, "few.zip"), 60, "READY after approve")
        after = rows(settings)["few.zip"]
    assert after["preflight"]["checked_at"] == preflight["checked_at"]  # not checked again
    assert after["preflight"]["approved_at"] is not None
    with Journal(settings.journal.path) as journal:
        kinds = [kind for kind, _ in journal.events(journal.by_path(str(path)).id)]  # type: ignore[union-attr]
    assert kinds.count("preflight-hold") == 1 and "approved" in kinds


def test_a_warn_uploads_with_its_reasons_in_status(
    emulator: EmulatorServer, tmp_path: Path, scene: Path
) -> None:
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0"})
    tripod = photo_zip(scene, tmp_path / "made", "tripod", 21, still_after=11)
    walk = photo_zip(scene, tmp_path / "made", "walk", 21)
    with Running(settings) as running:
        drop(tripod, settings.watch.paths[0])
        drop(walk, settings.watch.paths[0])
        wait_for(lambda: ready(settings, "tripod.zip") and ready(settings, "walk.zip"), 60)
        scraped = running.daemon.metrics.registry.get_sample_value
        assert scraped("teleport_sync_preflight_verdicts_total", {"verdict": "warn"}) == 1
        assert scraped("teleport_sync_preflight_verdicts_total", {"verdict": "ok"}) == 1
        page, strip = _console_strip(running, "tripod.zip")
    assert "Pre-flight" in page and "verdict-warn" in page and "neighbours near-identical" in page
    assert strip and all(jpeg.startswith(b"\xff\xd8") for jpeg in strip)  # small JPEGs
    status = rows(settings)
    warned = status["tripod.zip"]["preflight"]
    assert warned["verdict"] == "warn"
    assert any("10 of 20 neighbours near-identical" in r for r in warned["reasons"])
    assert [m["measure"] for m in warned["measures"]][:3] == ["frames", "unreadable", "resolution"]
    assert warned["worst_frames"][0]["name"].startswith("photos/IMG_00")
    assert status["walk.zip"]["preflight"]["verdict"] == "ok"
    assert status["walk.zip"]["preflight"]["reasons"] == []


def _console_strip(running: Running, name: str) -> tuple[str, list[bytes]]:
    """The capture page of `name` in the web console, and the worst-frame pictures it shows."""
    import re

    import httpx

    with httpx.Client(base_url=str(running.daemon.web_url), timeout=10) as http:
        listing = http.get("/files").text
        # The row is found by its path: the link's text may carry <wbr> break hints.
        row = rf'data-path="[^"]*/{re.escape(name)}">\s*<td class="file"><a href="/files/(\d+)"'
        found = re.search(row, listing)
        assert found, listing
        page = http.get(f"/files/{found.group(1)}").text
        sources = re.findall(r'src="(/files/\d+/preflight/\d+\.jpg)"', page)
        return page, [http.get(src).content for src in sources]


def test_without_the_extra_the_daemon_uploads_and_health_says_why(
    emulator: EmulatorServer, tmp_path: Path, scene: Path
) -> None:
    def no_av(name: str) -> ModuleType:
        if name == "av":
            raise ModuleNotFoundError("No module named 'av'", name="av")
        return importlib.import_module(name)

    settings = settings_for(emulator, tmp_path, preflight={"action": "hold"})
    few = photo_zip(scene, tmp_path / "made", "few", 8)
    with Running(settings, preflight_importer=no_av):
        drop(few, settings.watch.paths[0])
        wait_for(lambda: ready(settings, "few.zip"), 60, "READY, unjudged")
        with Journal(settings.journal.path) as journal:
            report = health_report(journal, settings.watch.paths)
    assert report["preflight"]["enabled"] is False
    assert "av cannot be imported" in report["preflight"]["reason"]
    assert "pip install 'teleport-sync[preflight]'" in report["preflight"]["reason"]
    assert rows(settings)["few.zip"]["preflight"] is None
