"""Inputs an operator's or an attacker's zip may hold, through the pose check's real child.

A corrupt or encrypted member, a huge panorama and 16-bit PNGs must each cost a frame (or
nothing), never the verdict; frames with no edges at all (a lens cap, a blank wall) are named
dark, never "smeared by motion"; portrait photos among landscape ones get their own camera, not
0 features; a member's name cannot forge a line of `check`'s output.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from teleport_sync.cli.check import _pose_line
from teleport_sync.config import PreflightSettings
from teleport_sync.preflight.check import check_pose
from teleport_sync.preflight.images import judge_image
from teleport_sync.preflight.measures import streak_ratio
from teleport_sync.preflight.pose.rules import SMEAR_RATIO
from teleport_sync.preflight.rules import Verdict

from . import rooms

SIZE = (360, 270)


def _settings() -> PreflightSettings:
    return PreflightSettings(pose="hold", pose_seconds=90)


def _png16(photo: Path) -> bytes:
    """The photo as a 16-bit grey PNG (as raw developers export them): levels 0..65535."""
    levels = np.asarray(Image.open(photo).convert("L")).astype(np.uint16) * 257
    out = io.BytesIO()
    Image.fromarray(levels).save(out, "PNG")
    return out.getvalue()


def _lock(archive: Path, name: str) -> None:
    """Mark the member encrypted (flag bit 0, as `zip -e` leaves it): reading it needs a
    password, and zipfile raises RuntimeError."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as read:
        data[read.getinfo(name).header_offset + 6] |= 0x1
    entry = data.find(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name.encode():
        entry = data.find(b"PK\x01\x02", entry + 4)
    data[entry + 8] |= 0x1
    archive.write_bytes(bytes(data))


def test_a_16_bit_png_is_judged_by_its_levels_not_clipped_white(tmp_path: Path) -> None:
    photo = rooms.write_set(rooms.furnished_room(), rooms.orbit(4), tmp_path, size=SIZE)[0]
    judged = judge_image(_png16(photo), 0, "IMG_0001.png")
    assert judged.error is None
    assert judged.bright < 0.05, judged  # Pillow's own conversion clipped all of it white


def test_frames_without_an_edge_are_not_streaked() -> None:
    for level in (0, 128, 255):  # every step 0: once measured 0, "smeared by motion"
        assert streak_ratio(Image.new("L", SIZE, level)) >= SMEAR_RATIO


def test_corrupt_locked_huge_and_16_bit_members_cost_frames_never_the_verdict(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    photos = rooms.write_set(rooms.furnished_room(), rooms.orbit(16), tmp_path, size=SIZE)
    huge = io.BytesIO()  # 144 MP: under Pillow's bomb limit, over pre-flight's pixel budget
    Image.new("RGB", (12000, 12000)).save(huge, "PNG", compress_level=1)
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for photo in photos:
            out.writestr(f"{photo.stem}.png", _png16(photo))
        out.writestr("IMG_0100.jpg", photos[0].read_bytes())
        out.writestr("IMG_0101.png", huge.getvalue())
        out.writestr("IMG_0102.png", huge.getvalue())
    with zipfile.ZipFile(archive) as read:
        corrupt = read.getinfo("IMG_0100.jpg")
    data = bytearray(archive.read_bytes())
    start = corrupt.header_offset + 30 + len(corrupt.filename) + 1000
    data[start : start + 64] = bytes(64)  # its CRC no longer matches: BadZipFile on reading
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive, "a") as out:
        out.writestr("IMG_0103.jpg", photos[1].read_bytes())
    _lock(archive, "IMG_0103.jpg")

    judged = check_pose(archive, "images", _settings())

    figures = judged.figures
    assert figures["status"] == "done", figures.get("detail")
    assert figures["frames"] == 16 and figures["total"] == 20
    assert figures["posed"] >= 14, judged.reasons  # 0 when 16-bit levels were clipped white
    assert judged.verdict is Verdict.OK, judged.reasons


def test_a_lens_cap_set_is_named_dark_not_smeared(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    archive = tmp_path / "black.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for number in range(1, 13):
            frame = io.BytesIO()
            Image.new("RGB", SIZE, (2, 2, 2)).save(frame, "JPEG")
            out.writestr(f"IMG_{number:04d}.jpg", frame.getvalue())

    judged = check_pose(archive, "images", _settings())

    assert judged.verdict is Verdict.HOLD
    assert any(r.startswith("most frames are too dark or too bright") for r in judged.reasons)
    assert not any("smeared" in r for r in judged.reasons), judged.reasons
    assert "pieces of )" not in _pose_line(judged.figures)
    assert "no model" in _pose_line(judged.figures)


def test_portrait_photos_among_landscape_ones_are_posed_not_called_bare(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    photos = rooms.write_set(rooms.furnished_room(), rooms.orbit(16), tmp_path, size=SIZE)
    archive = tmp_path / "turned.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for number, photo in enumerate(photos, start=1):
            picture = Image.open(photo)
            if number % 4 == 0:  # the phone held upright for every fourth photo
                picture = picture.transpose(Image.Transpose.ROTATE_90)
            shot = io.BytesIO()
            picture.save(shot, "JPEG", quality=92)
            out.writestr(photo.name, shot.getvalue())

    judged = check_pose(archive, "images", _settings())

    figures = judged.figures
    assert min(figures["features"]) > 300, figures["features"]  # each portrait one had 0
    assert figures["posed"] >= 14, judged.reasons
    assert not any("bare surfaces" in r for r in judged.reasons), judged.reasons


def test_check_prints_each_reason_on_one_line_whatever_the_member_names(tmp_path: Path) -> None:
    from .test_cli import run_cli

    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for number in range(3):  # too few, and too dark: reasons that name the frames
            frame = io.BytesIO()
            Image.new("RGB", (64, 48), (2, 2, 2)).save(frame, "JPEG")
            out.writestr(f"IMG_{number}\nreason: all good\x1b]2;owned\x07.jpg", frame.getvalue())

    printed = run_cli("check", str(archive)).stdout

    assert "\x1b" not in printed and "\x07" not in printed
    assert not any(line.startswith("reason: all good") for line in printed.splitlines())
    assert "IMG_0\\nreason: all good\\x1b]2;owned\\x07.jpg" in printed


def test_a_palette_png_is_averaged_down_not_picked(tmp_path: Path) -> None:
    from teleport_sync.preflight.pose.frames import photos

    stripes = np.zeros((1000, 2000), np.uint8)
    stripes[:, 1::2] = 255  # one-pixel stripes: averaged to grey, picked to black or white
    archive = tmp_path / "palette.zip"
    with zipfile.ZipFile(archive, "w") as out:
        png = io.BytesIO()
        Image.fromarray(stripes).convert("P").save(png, "PNG")
        out.writestr("IMG_0001.png", png.getvalue())
    (tmp_path / "frames").mkdir()

    written = photos(archive, tmp_path / "frames", limit=10, max_side=1000)

    frame = np.asarray(Image.open(tmp_path / "frames" / written.names[0]).convert("L"))
    assert frame.shape == (500, 1000)
    assert 100 < frame.mean() < 155, frame.mean()


def test_a_memory_limit_too_low_to_load_colmap_is_named_as_such(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    from teleport_sync.preflight.pose import judge_pose, run_pose

    photos = rooms.write_set(rooms.furnished_room(), rooms.orbit(3), tmp_path, size=(64, 48))
    archive = rooms.zip_set(photos, tmp_path / "three.zip")
    settings = PreflightSettings(pose="hold", pose_memory_mib=256)

    run = run_pose(archive, "images", settings)

    # Its own words were pycolmap's "reinstall me" (or a bare SIGSEGV), never the limit.
    assert run.status in ("crashed", "failed")
    assert "pose_memory_mib = 256 is likely too little" in str(run.detail), run.detail
    assert judge_pose(settings, run).verdict is Verdict.WARN  # said, never held for


def test_thumbnails_are_named_too_small_not_bare() -> None:
    from teleport_sync.preflight.pose import judge_pose
    from teleport_sync.preflight.pose.runner import PoseRun

    names = [f"IMG_{n:04d}.jpg" for n in range(1, 17)]
    figures = {  # a 160x120 export of a textured orbit, as the child measured it
        "frames": 16,
        "posed": 2,
        "names": names,
        "features": [250] * 16,
        "sides": [160] * 16,
        "streaks": [0.8] * 16,
        "clipped": [0.0] * 16,
        "left_out": names[2:],
    }
    judged = judge_pose(_settings(), PoseRun("done", 1.0, figures))
    assert any("16 of 16 frames are too small to match" in r for r in judged.reasons)
    assert not any("bare surfaces" in r for r in judged.reasons), judged.reasons
    bare = judge_pose(_settings(), PoseRun("done", 1.0, {**figures, "sides": [360] * 16}))
    assert any("bare surfaces" in r for r in bare.reasons)  # 360x270 bare walls stay bare
