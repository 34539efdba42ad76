"""Frames before upload, counted from files made by real tools (ffmpeg, the zip CLI)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from teleport_sync.inputs.frames import count_frames
from teleport_sync.inputs.samples import write_sample_mp4
from teleport_sync.models import InputDataFormat

from .helpers import make_mp4

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
needs_zip = pytest.mark.skipif(shutil.which("zip") is None, reason="zip CLI not installed")


def ffmpeg(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", *args, str(out)],
        check=True,
        timeout=60,
    )
    return out


@needs_ffmpeg
def test_an_ffmpeg_mp4_of_3_s_at_5_fps_counts_15_frames(tmp_path: Path) -> None:
    video = ffmpeg(
        tmp_path,
        "walk.mp4",
        "-i",
        "testsrc=duration=3:size=160x120:rate=5",
        "-c:v",
        "mpeg4",
    )
    counted = count_frames(video, InputDataFormat.VIDEO)
    assert counted.frames == 15
    assert counted.duration_seconds == pytest.approx(3.0)


@needs_ffmpeg
def test_the_video_track_is_counted_not_the_audio_track(tmp_path: Path) -> None:
    video = ffmpeg(
        tmp_path,
        "talk.mp4",
        "-i",
        "sine=duration=2",
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=96x64:rate=10",
        "-map",
        "1:v",
        "-map",
        "0:a",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
    )
    counted = count_frames(video, InputDataFormat.VIDEO)
    assert counted.frames == 20
    assert counted.duration_seconds == pytest.approx(2.0)


def test_the_synthetic_video_track_counts_like_a_real_one(tmp_path: Path) -> None:
    # The tests' and the demo's MP4s carry one track of 30 samples at 10 fps.
    counted = count_frames(make_mp4(tmp_path / "clip.mp4", 50_000), InputDataFormat.VIDEO)
    assert (counted.frames, counted.duration_seconds) == (30, 3.0)
    sample = write_sample_mp4(tmp_path / "walkaround.mp4", size=10_000)
    assert count_frames(sample, InputDataFormat.VIDEO) == counted
    # An audio-only movie has samples too, but no video frames.
    memo = make_mp4(tmp_path / "memo.mp4", 50_000, handler=b"soun")
    assert count_frames(memo, InputDataFormat.VIDEO).frames is None


@needs_zip
def test_images_in_a_zip_made_by_the_zip_cli(tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    (folder / "sub").mkdir(parents=True)
    for i in range(7):
        (folder / "sub" / f"{i}.JPG").write_bytes(b"\xff\xd8\xff" + bytes(100))
    (folder / "notes.txt").write_text("not an image")
    archive = tmp_path / "shoot.zip"
    subprocess.run(["zip", "-qr", str(archive), "shoot"], cwd=tmp_path, check=True)
    assert count_frames(archive, InputDataFormat.BULK_IMAGES).frames == 7


def test_zip64_entries_and_unknown_structures(tmp_path: Path) -> None:
    archive = tmp_path / "zip64.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for i in range(11):
            with out.open(f"img/{i}.png", "w", force_zip64=True) as entry:
                entry.write(b"\x89PNG" + bytes(64))
        out.mkdir("empty.jpg")  # a folder named like an image is not one
    assert count_frames(archive, InputDataFormat.BULK_IMAGES).frames == 11
    # An MP4 with no tracks says nothing about frames; that is not an error here (intake
    # refuses it before it is counted).
    shaped = make_mp4(tmp_path / "shaped.mp4", 4096, handler=None)
    assert count_frames(shaped, InputDataFormat.VIDEO).frames is None
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    assert count_frames(broken, InputDataFormat.BULK_IMAGES).frames is None
