"""The pose check on scenes rendered with depth (tests/rooms.py), through its real child process.

Each set is a few hundred pixels and 16-20 frames, so COLMAP's mapper answers in seconds: a
posable orbit, bare flat-coloured walls, a pan from one spot, two walks that never overlap; and
children that abort or overrun, which are said and never hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from teleport_sync.config import PreflightSettings
from teleport_sync.preflight.check import check_pose, with_pose
from teleport_sync.preflight.pose import judge_pose, run_pose
from teleport_sync.preflight.pose.pairs import groups, pairs_for
from teleport_sync.preflight.pose.runner import PoseRun
from teleport_sync.preflight.rules import Result, Verdict

from . import rooms

pycolmap = pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")

SIZE = (360, 270)


@pytest.fixture(scope="module")
def room() -> rooms.Room:
    return rooms.furnished_room()


def _zip(tmp_path: Path, room: rooms.Room, cameras, name: str) -> Path:
    photos = rooms.write_set(room, cameras, tmp_path / name, size=SIZE)
    return rooms.zip_set(photos, tmp_path / f"{name}.zip")


def _settings(**keys: object) -> PreflightSettings:
    return PreflightSettings(pose="hold", pose_seconds=90, **keys)


def test_an_orbit_is_posed_whole_with_its_figures(tmp_path: Path, room: rooms.Room) -> None:
    capture = _zip(tmp_path, room, rooms.orbit(18), "orbit")
    judged = check_pose(capture, "images", _settings())
    figures = judged.figures
    assert judged.verdict is Verdict.OK, judged.reasons
    assert judged.reasons == ()
    assert figures["status"] == "done"
    assert figures["posed"] == 18 and figures["frames"] == 18
    assert figures["left_out"] == []
    assert figures["pieces"][0] == 18
    assert figures["view_groups"] == [18]
    assert figures["points"] > 500
    assert figures["track_length_mean"] > 2
    # The 3D view's material: the sparse points and the camera path in capture order.
    assert len(figures["cloud"]) > 500 and len(figures["cloud"][0]) == 6
    assert [step[0] for step in figures["path"]] == [f"IMG_{n:04d}.jpg" for n in range(1, 19)]


def test_bare_walls_are_named_and_held(tmp_path: Path) -> None:
    bare = rooms.furnished_room(bare=True)
    capture = _zip(tmp_path, bare, rooms.orbit(16), "bare")
    judged = check_pose(capture, "images", _settings())
    assert judged.verdict is Verdict.HOLD
    assert judged.figures["posed"] == 0
    assert any("show bare surfaces (< 300 features" in r for r in judged.reasons), judged.reasons
    assert any("no frame could be posed (0 of 16)" in r for r in judged.reasons)


def _smear(pixels: np.ndarray, length: int, step: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The frame as the camera moving `length` pixels along `step` during the exposure."""
    moved = [
        np.roll(pixels.astype(np.float32), (k * step[0], k * step[1]), axis=(0, 1))
        for k in range(-(length // 2), length // 2 + 1)
    ]
    return np.clip(sum(moved) / len(moved), 0, 255).astype(np.uint8)


def test_streaks_tell_a_smeared_frame_from_a_sharp_a_bare_or_a_defocused_one(
    room: rooms.Room,
) -> None:
    from PIL import ImageFilter

    from teleport_sync.preflight.measures import streak_ratio
    from teleport_sync.preflight.pose.rules import SMEAR_RATIO

    position, target = next(iter(rooms.orbit(8)))
    sharp = rooms.render(room, position, target, SIZE)
    bare = rooms.render(rooms.furnished_room(bare=True), position, target, SIZE)
    ratio = lambda pixels: streak_ratio(Image.fromarray(pixels))  # noqa: E731
    assert ratio(sharp) > 0.7 and ratio(bare) > 0.7
    defocused = Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(4))
    assert streak_ratio(defocused) > 0.6  # blurred evenly: the sharpness floor's to name
    for step in [(0, 1), (1, 0), (1, 1), (1, -1)]:  # sideways, up, both diagonals
        assert ratio(_smear(sharp, 15, step)) < SMEAR_RATIO, step


def test_frames_smeared_by_motion_are_named_as_smeared_not_bare(
    tmp_path: Path, room: rooms.Room
) -> None:
    photos = rooms.write_set(room, rooms.orbit(16), tmp_path / "smeared", size=SIZE)
    for photo in photos:  # the camera swung sideways 31 px while each was exposed
        smeared = _smear(np.asarray(Image.open(photo)), 31)
        Image.fromarray(smeared).save(photo, quality=92)
    judged = check_pose(rooms.zip_set(photos, tmp_path / "smeared.zip"), "images", _settings())
    assert judged.verdict is Verdict.HOLD
    assert judged.figures["posed"] < 8
    assert any(r.startswith("most frames are smeared by motion (16 of 16") for r in judged.reasons)
    assert not any("bare surfaces" in r for r in judged.reasons), judged.reasons


def test_frames_too_dark_to_match_are_named_as_dark_not_bare(
    tmp_path: Path, room: rooms.Room
) -> None:
    photos = rooms.write_set(room, rooms.orbit(16), tmp_path / "dark", size=SIZE)
    for photo in photos:  # shot at 1/30 of the light
        dark = (np.asarray(Image.open(photo), np.float32) / 30).astype(np.uint8)
        Image.fromarray(dark).save(photo, quality=92)
    judged = check_pose(rooms.zip_set(photos, tmp_path / "dark.zip"), "images", _settings())
    assert judged.verdict is Verdict.HOLD
    assert any(r.startswith("most frames are too dark or too bright") for r in judged.reasons)
    assert not any("bare surfaces" in r for r in judged.reasons), judged.reasons


def test_a_pan_from_one_spot_has_no_parallax(tmp_path: Path, room: rooms.Room) -> None:
    capture = _zip(tmp_path, room, rooms.pan(16), "pan")
    judged = check_pose(capture, "images", _settings())
    assert judged.verdict is not Verdict.OK
    assert any(r.startswith("no parallax: the camera turned on the spot") for r in judged.reasons)


def test_two_walks_that_never_overlap_are_two_groups(tmp_path: Path, room: rooms.Room) -> None:
    photos = rooms.write_set(room, rooms.walk(8, 1), tmp_path / "walks", size=SIZE)
    photos += rooms.write_set(room, rooms.walk(8, -1), tmp_path / "walks", size=SIZE, first=9)
    capture = rooms.zip_set(photos, tmp_path / "walks.zip")
    judged = check_pose(capture, "images", _settings())
    assert judged.figures["view_groups"][:2] == [8, 8]
    assert judged.figures["posed"] <= 8
    assert judged.verdict is Verdict.WARN  # 8 of 16 posed: under 80 %, not under 40 %
    assert any(
        "two groups of frames never see the same surfaces (8 + 8)" in r for r in judged.reasons
    )
    left_out = next(r for r in judged.reasons if r.startswith("posed 8 of 16"))
    assert "left out IMG_00" in left_out


def test_a_child_that_aborts_is_said_and_never_holds(tmp_path: Path) -> None:
    capture = tmp_path / "any.zip"
    capture.write_bytes(b"PK")
    aborting = lambda request, result: [sys.executable, "-c", "import os; os.abort()"]  # noqa: E731
    run = run_pose(capture, "images", _settings(), command=aborting)
    assert run.status == "crashed"
    assert "SIGABRT" in (run.detail or "")
    judged = judge_pose(_settings(), run)
    assert judged.verdict is Verdict.WARN
    assert judged.reasons == (
        f"pose check gave no verdict: {run.detail}; the upload is not held for it",
    )


def test_a_child_that_overruns_is_stopped_and_said(tmp_path: Path) -> None:
    capture = tmp_path / "any.zip"
    capture.write_bytes(b"PK")
    pid_file = tmp_path / "pid"
    sleeper = lambda request, result: [  # noqa: E731
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
    ]
    settings = PreflightSettings(pose="hold", pose_seconds=0.5)
    run = run_pose(capture, "images", settings, command=sleeper)
    assert run.status == "timeout"
    assert "ran past its 0.5 s limit (pose_seconds)" in (run.detail or "")
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(child, 0)  # killed and reaped, not left running
    assert judge_pose(settings, run).verdict is Verdict.WARN


def test_a_missing_pose_extra_is_said_plainly_and_never_blocks(tmp_path: Path) -> None:
    run = run_pose(tmp_path / "x.zip", "images", _settings(), available=lambda: "no pycolmap")
    judged = judge_pose(_settings(), run)
    assert run.status == "missing"
    assert judged.verdict is Verdict.OK
    assert judged.reasons == ("pose check not run: no pycolmap",)


def test_the_stronger_verdict_wins_and_figures_are_kept() -> None:
    pictures = Result(Verdict.OK, (), (), (), {"kind": "images"})
    run = PoseRun("done", 1.0, {"frames": 10, "posed": 2, "left_out": [f"f{n}" for n in range(8)]})
    merged = with_pose(pictures, judge_pose(_settings(), run))
    assert merged.verdict is Verdict.HOLD
    assert merged.reasons[-1] == (
        "posed 2 of 10 (under 80%, pose_min_posed); left out f0, f1, f2, f3 and 4 more"
    )
    assert merged.figures["pose"]["posed"] == 2
    warn_only = with_pose(pictures, judge_pose(PreflightSettings(pose="warn"), run))
    assert warn_only.verdict is Verdict.WARN


def test_ordered_sets_match_neighbours_and_close_their_loop() -> None:
    chosen = pairs_for(100, ordered=True, overlap=5, exhaustive_up_to=40)
    assert (0, 1) in chosen and (0, 5) in chosen and (0, 6) not in chosen
    assert (0, 10) in chosen and (0, 20) in chosen and (0, 40) in chosen  # powers of two apart
    # ... from every (overlap / 2)-th frame only: one bridge joins two groups, and each far
    # pair costs a match.
    assert (2, 12) in chosen and (1, 11) not in chosen and (3, 23) not in chosen
    assert (0, 99) in chosen and (4, 95) in chosen  # the ends against each other
    assert len(chosen) < 100 * 99 // 2 // 5
    assert len(pairs_for(30, ordered=True, overlap=5, exhaustive_up_to=40)) == 30 * 29 // 2
    assert len(pairs_for(60, ordered=False, overlap=5, exhaustive_up_to=40)) == 60 * 59 // 2


def test_groups_are_the_connected_frames_largest_first() -> None:
    assert groups(6, [(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [4, 5], [3]]


def test_a_video_is_sampled_by_time_and_posed(tmp_path: Path, room: rooms.Room) -> None:
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed (Debian: apt-get install ffmpeg)")
    rooms.write_set(room, rooms.orbit(18), tmp_path / "frames", size=SIZE)
    video = tmp_path / "orbit.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-framerate", "1", "-start_number", "1",
         "-i", str(tmp_path / "frames" / "IMG_%04d.jpg"),
         "-vf", "fps=10,scale=1280:960", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    # One view a second for 18 s, at 10 frames/s: sampled at pose_fps = 1, each view once.
    # At 1280x960 the frames are scaled to 1024 px as they are converted, and large enough for
    # SIFT at their own size (no doubling): the path real videos take.
    judged = check_pose(video, "video", _settings(pose_fps=1.0))
    figures = judged.figures
    assert figures["status"] == "done", figures.get("detail")
    assert figures["frames"] == 18 and figures["ordered"] is True
    assert figures["names"][:3] == ["0.0s", "1.0s", "2.0s"]
    assert figures["posed"] >= 16, judged.reasons
    assert figures["features"] and min(figures["features"]) >= 300  # none called bare
