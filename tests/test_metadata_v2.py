"""Capture Metadata v2: models through v2, the camera list on disk and in `status`, v1 as the
remembered fallback, `num_frames` on create; all over loopback against the emulator."""

from __future__ import annotations

import io
import json
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from teleport_sync.emulator.artefacts import model_files
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.results import ModelOptions, fetch_cameras, fetch_models, plan_models
from teleport_sync.results.metadata import MetadataChoice

from .conftest import write_config
from .helpers import set_knobs, wait_for
from .test_api import client_for
from .test_cli import run_cli
from .test_results import ready_capture

PHOTOS = [f"shoot/IMG_{n:04d}.JPG" for n in range(401, 417)]  # 16 named photos


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=33,
        processing_delay_seconds=0.5,
        cameras_left_out=["IMG_0412.JPG", "img_0413.jpg"],  # any case, by file name
    )


def photo_zip(path: Path, names: list[str] = PHOTOS) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.writestr(name, b"\xff\xd8\xff\xe0" + os.urandom(2048))
        archive.writestr("shoot/notes.txt", b"not a photo")
    return path


def config_for(tmp_path: Path, emulator: EmulatorServer, results: str = "") -> Path:
    extra = f'[poll]\ninterval_seconds = 0.2\n[results]\ndir = "{tmp_path / "models"}"\n{results}\n'
    return write_config(tmp_path / "config.toml", emulator, extra=extra)


def calls(emulator: EmulatorServer, prefix: str) -> list[str]:
    return [c.path for c in emulator.stats.snapshot() if c.path.startswith(prefix)]


def status_rows(config: Path) -> dict[str, dict]:
    result = run_cli("--config", str(config), "status", "--json")
    assert result.returncode == 0, result.stderr
    return {Path(r["path"]).name: r for r in json.loads(result.stdout)}


def test_named_photos_end_with_the_v2_model_the_camera_list_and_the_left_out_named(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = config_for(tmp_path, emulator, 'crop_variant = "autocrop"\ncoord_system = "colmap"')
    scan = photo_zip(tmp_path / "studio.zip")
    result = run_cli("--config", str(config), "upload", "--follow", str(scan))
    assert result.returncode == 0, result.stdout + result.stderr

    folder = tmp_path / "models" / "studio.zip"
    assert (folder / "ply" / "model.ply").read_bytes() == model_files("ply")[0][1]
    cameras = json.loads((folder / "cameras.json").read_text())
    assert len(cameras["cameras"]) == 14 and "frames_tried" in cameras  # kept as sent
    kept = json.loads((folder / "metadata.json").read_text())["ply"]
    assert kept["registration"]["telemetry"] == "none recorded"  # unknown fields kept
    assert "?" not in kept["model_url"]  # no signed query reaches the disk
    # Through v2, with the options given; v1 never asked.
    [v2] = [c for c in emulator.stats.snapshot() if c.path.startswith("/api/v2/")]
    assert v2.status == 200
    assert v2.query == "content_profile=ply&crop_variant=autocrop&coord_system=colmap"
    assert calls(emulator, "/share/") == []
    # num_frames on create: the zip's images (not its notes.txt).
    [capture] = emulator.backend.captures.values()
    assert capture.num_frames == len(PHOTOS)

    row = status_rows(config)["studio.zip"]
    posed = row["teleport_posed"]
    assert (posed["posed"], posed["frames"]) == (14, 16)
    assert posed["left_out"] == ["shoot/IMG_0412.JPG", "shoot/IMG_0413.JPG"]
    assert posed["sentence"] == "Teleport posed 14 of 16 photos; left out: IMG_0412, IMG_0413"
    table = run_cli("--config", str(config), "status", env={"COLUMNS": "200"})
    assert "Teleport posed 14 of 16 photos; left out: IMG_0412, IMG_0413" in table.stdout
    # Journaled beside pre-flight's verdict, for the report that compares them.
    with Journal(tmp_path / "journal.sqlite3") as journal:
        [outcome] = journal.outcomes()
    assert (outcome.state, outcome.posed, outcome.frames) == ("READY", 14, 16)
    assert outcome.failure_slug is None and outcome.left_out == posed["left_out"]


def test_without_v2_v1_brings_the_model_and_is_remembered_for_the_account(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, metadata_v2_status=404)  # an account without v2
    config = config_for(tmp_path, emulator)
    for name in ("first.zip", "second.zip"):
        scan = photo_zip(tmp_path / name)
        result = run_cli("--config", str(config), "upload", "--follow", str(scan))
        assert result.returncode == 0, result.stdout + result.stderr
        model = tmp_path / "models" / name / "ply" / "model.ply"
        assert model.read_bytes() == model_files("ply")[0][1]
        assert not (model.parent.parent / "cameras.json").exists()
    assert len(calls(emulator, "/api/v2/")) == 1  # asked once, then remembered
    assert len(calls(emulator, "/share/")) == 2
    rows = status_rows(config)
    assert rows["first.zip"]["teleport_posed"] is None
    assert rows["second.zip"]["phase"] == "done"


def test_metadata_v1_and_v2_modes_and_v1_only_options(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "chair.zip")
        # quality "sd" is v1's: the models come through v1, the camera list still through v2.
        options = ModelOptions(quality="sd", metadata=MetadataChoice("auto"))
        plan = plan_models(client, sid, ["ply", "fragment-float16"], tmp_path / "a", options)
        fetch_models(client, plan)
        fetch_cameras(client, plan)
        assert plan.versions == {"ply": "v1", "fragment-float16": "v1"}
        assert (tmp_path / "a" / "ply" / "model.ply").read_bytes() == model_files("ply", "sd")[0][1]
        assert (tmp_path / "a" / "cameras.json").is_file()
        # v2 for a profile of several files: every chunk, in order.
        options = ModelOptions(metadata=MetadataChoice("v2"))
        plan = plan_models(
            client, sid, ["fragment-float16", "ksplat-v2-compress0"], tmp_path, options
        )
        fetch_models(client, plan)
        assert plan.missing == ["ksplat-v2-compress0"]  # v2's 404 for a profile: missing
        for name, data in model_files("fragment-float16"):
            assert (tmp_path / "fragment-float16" / name).read_bytes() == data
        # "v2" on an account without it is an error that says what to set.
        set_knobs(emulator, metadata_v2_status=405)
        with pytest.raises(Exception, match=r'metadata = "auto"'):
            plan_models(client, sid, ["ply"], tmp_path / "b", options)
        v1_only = ModelOptions(metadata=MetadataChoice("v1"))
        before = len(calls(emulator, "/api/v2/"))
        plan = plan_models(client, sid, ["ply"], tmp_path / "c", v1_only)
        assert plan.versions == {"ply": "v1"} and len(calls(emulator, "/api/v2/")) == before


def test_an_account_found_without_v2_is_asked_again_after_a_week(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, metadata_v2_status=404)
    auto = ModelOptions(metadata=MetadataChoice("auto"))
    with client_for(emulator) as client, Journal(tmp_path / "j.sqlite3") as journal:
        _, sid = ready_capture(emulator, client, "chair.zip")
        plan_models(client, sid, ["ply"], tmp_path / "a", auto, facts=journal)
        plan_models(client, sid, ["ply"], tmp_path / "b", auto, facts=journal)
        assert len(calls(emulator, "/api/v2/")) == 1
        [key] = [k for k in _facts(journal) if k.startswith("metadata-version ")]
        assert emulator.config.client_id in key and emulator.config.client_secret not in key
        # Learned eight days ago: v2 is asked again (the account may have gained it).
        old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
        journal.set_fact(key, json.dumps({"version": "v1", "at": old}))
        set_knobs(emulator, metadata_v2_status=200)
        plan = plan_models(client, sid, ["ply"], tmp_path / "c", auto, facts=journal)
        assert plan.versions == {"ply": "v2"}
        assert json.loads(journal.fact(key) or "{}")["version"] == "v2"


def _facts(journal: Journal) -> list[str]:
    return [r["key"] for r in journal._query("SELECT key FROM facts")]


def test_the_emulator_answers_405_to_a_single_capture_get_and_404_to_a_wrong_segment(
    emulator: EmulatorServer,
) -> None:
    with client_for(emulator) as client:
        eid, sid = ready_capture(emulator, client, "chair.zip")
        token = client.access_token()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=emulator.url, headers=headers) as http:
        assert http.get(f"/api/v1/captures/{eid}").status_code == 405
        good = http.get(f"/api/v2/captures/{sid}-{eid}/metadata")
        assert good.status_code == 200 and good.json()["cameras_url"]
        assert http.get(f"/api/v2/captures/{sid}-nosuchsegment/metadata").status_code == 404
        assert http.get(f"/api/v2/captures/{sid}/metadata").status_code == 200
        assert httpx.get(f"{emulator.url}/api/v2/captures/{sid}/metadata").status_code == 401


def real_photo_zip(path: Path, names: list[str]) -> Path:
    """Small real JPEGs (the console draws their thumbnails with Pillow)."""
    from PIL import Image

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i, name in enumerate(names):
            out = io.BytesIO()
            Image.new("RGB", (640, 480), (20 * i % 255, 90, 160)).save(out, "JPEG")
            archive.writestr(name, out.getvalue())
    return path


def test_the_daemon_shows_what_teleport_did_in_the_console_and_the_ready_notification(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from .sink import Sink
    from .test_daemon import Running, settings_for

    with Sink() as sink:
        settings = settings_for(
            emulator,
            tmp_path,
            web={"listen": "127.0.0.1:0"},
            notify=[{"url": sink.url, "events": ["ready"]}],
        )
        real_photo_zip(tmp_path / "inbox" / "room.zip", PHOTOS)
        with Running(settings) as running:
            wait_for(lambda: len(sink.received) == 1, 60, "the ready notification")
            assert running.daemon.web_url is not None
            with httpx.Client(base_url=running.daemon.web_url, timeout=10) as http:
                page = http.get("/files/1").text
                thumb = http.get("/files/1/left-out/0")
                path = http.get("/files/1/cameras.json").json()["positions"]
                beyond = http.get("/files/1/left-out/2")
    sentence = "Teleport posed 14 of 16 photos; left out: IMG_0412, IMG_0413"
    ready = sink.received[0].json()
    assert ready["event"] == "ready" and ready["reason"] == sentence
    assert ready["teleport_posed"]["left_out"] == ["shoot/IMG_0412.JPG", "shoot/IMG_0413.JPG"]
    from teleport_sync.web.app import viewer_available

    assert sentence in page
    # The camera path goes to the 3D view when its files are installed (else a still picture).
    assert ('data-cameras="/files/1/cameras.json"' in page) is viewer_available()
    assert 'src="/files/1/left-out/0"' in page and "IMG_0413.JPG" in page
    from PIL import Image

    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (240, 180)  # drawn from the zip
    assert beyond.status_code == 404  # only the photos left out are served
    assert len(path) == 14 and all(len(p) == 3 for p in path)


def test_a_video_names_the_frames_left_out_by_the_services_numbering(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from teleport_sync.inputs.samples import box, video_moov

    set_knobs(emulator, cameras_left_out=[], cameras_leave_out_every=4)
    config = config_for(tmp_path, emulator)
    # A walk of 300 frames (30 s at 10 fps): ftyp, mdat, then moov, as cameras write it.
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    mdat = box(b"mdat", os.urandom(64 * 1024))
    moov = video_moov(frames=300, data_offset=len(ftyp) + 8, data_size=len(mdat) - 8)
    clip = tmp_path / "walk.mp4"
    clip.write_bytes(ftyp + mdat + moov)
    result = run_cli("--config", str(config), "upload", "--follow", str(clip))
    assert result.returncode == 0, result.stdout + result.stderr
    [capture] = emulator.backend.captures.values()
    assert capture.num_frames == 300  # the video's frames, counted from its moov
    posed = status_rows(config)["walk.mp4"]["teleport_posed"]
    assert posed["kind"] == "video frames" and posed["matched"] is True
    # The service tried frames 0, 15, ..., 285 (20) and left out every 4th: 45, 105, ...;
    # the last one (285) is left out too, past the last posed frame: it cannot be seen.
    assert posed["left_out"] == [f"frame_{n:05d}.jpg" for n in (45, 105, 165, 225)]
    assert (posed["posed"], posed["frames"]) == (15, 19)
    assert posed["sentence"].startswith("Teleport posed 15 of 19 video frames; left out:")


def test_a_failure_slug_reads_as_what_to_do_in_status(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, fail_processing_with="NOT_ENOUGH_FRAMES")
    config = config_for(tmp_path, emulator)
    scan = photo_zip(tmp_path / "thin.zip", PHOTOS[:3])
    result = run_cli("--config", str(config), "upload", "--follow", str(scan))
    assert result.returncode == 1, result.stdout + result.stderr
    row = status_rows(config)["thin.zip"]
    assert row["phase"] == "failed" and row["error"].startswith("NOT_ENOUGH_FRAMES")
    assert row["reason"].startswith("NOT_ENOUGH_FRAMES: the service found too few usable frames")
    assert row["teleport_posed"] is None


def test_v2_down_brings_the_models_through_v1_with_a_note_and_is_not_remembered(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    auto = ModelOptions(metadata=MetadataChoice("auto"))
    with client_for(emulator) as client, Journal(tmp_path / "j.sqlite3") as journal:
        _, sid = ready_capture(emulator, client, "chair.zip")
        set_knobs(emulator, metadata_v2_status=503)  # after the client's own retries
        plan = plan_models(client, sid, ["ply", "sogs-sh0"], tmp_path / "a", auto, facts=journal)
        asked = len(calls(emulator, "/api/v2/"))
        assert plan.versions == {"ply": "v1", "sogs-sh0": "v1"} and plan.cameras_url is None
        assert plan.notes and "metadata v2 did not answer" in plan.notes[0]
        assert asked == 6  # one profile's retries; the next profile went straight to v1
        assert not [k for k in _facts(journal) if k.startswith("metadata-version")]
        set_knobs(emulator, metadata_v2_status=200)
        again = plan_models(client, sid, ["ply"], tmp_path / "b", auto, facts=journal)
        assert again.versions == {"ply": "v2"} and not again.notes


def test_crop_variant_and_coord_system_are_set_per_folder(tmp_path: Path) -> None:
    from teleport_sync.config import Settings
    from teleport_sync.results.actions import model_options
    from teleport_sync.watch.folders import effective

    settings = Settings(
        watch={
            "paths": [tmp_path / "in"],
            "folder": [{"path": tmp_path / "in" / "drone", "crop_variant": "full"}],
        },
        results={"crop_variant": "autocrop", "coord_system": "colmap"},
    )
    drone = model_options(effective(settings, tmp_path / "in" / "drone" / "a.zip").results)
    other = model_options(effective(settings, tmp_path / "in" / "b.zip").results)
    assert drone.metadata == MetadataChoice("auto", "full", "colmap")
    assert other.metadata == MetadataChoice("auto", "autocrop", "colmap")
