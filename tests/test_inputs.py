"""Format completeness on files made by real tools, whole and truncated."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from teleport_sync.inputs import check_complete
from teleport_sync.inputs.samples import video_moov

from .helpers import make_mp4, make_zip

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
needs_zip = pytest.mark.skipif(shutil.which("zip") is None, reason="zip CLI not installed")


def truncate(path: Path, keep: int) -> Path:
    out = path.with_name("truncated-" + path.name)
    out.write_bytes(path.read_bytes()[:keep])
    return out


@pytest.fixture(scope="module")
def ffmpeg_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=160x120:rate=15",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return out


@needs_ffmpeg
def test_ffmpeg_mp4_whole_is_complete(ffmpeg_mp4: Path) -> None:
    assert check_complete(ffmpeg_mp4).complete


@needs_ffmpeg
def test_ffmpeg_faststart_mp4_is_complete(tmp_path: Path, ffmpeg_mp4: Path) -> None:
    out = tmp_path / "fast.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(ffmpeg_mp4),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(out),
        ],
        check=True,
    )
    assert check_complete(out).complete


@needs_ffmpeg
def test_ffmpeg_mp4_truncated_is_incomplete(ffmpeg_mp4: Path) -> None:
    size = ffmpeg_mp4.stat().st_size
    for keep in (size - 1, size // 2, 30):
        result = check_complete(truncate(ffmpeg_mp4, keep))
        assert result.state == "incomplete", (keep, result)


@needs_ffmpeg
def test_mp4_without_moov_is_incomplete(tmp_path: Path, ffmpeg_mp4: Path) -> None:
    data = ffmpeg_mp4.read_bytes()
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append((kind, data[offset : offset + size]))
        offset += size
    no_moov = tmp_path / "nomoov.mp4"
    no_moov.write_bytes(b"".join(body for kind, body in boxes if kind != b"moov"))
    result = check_complete(no_moov)
    assert result.state == "incomplete" and "moov" in result.reason


def test_random_bytes_named_mp4_is_invalid(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(os.urandom(100_000))
    assert check_complete(fake).state == "invalid"


def test_mp4_with_64_bit_box_sizes(tmp_path: Path) -> None:
    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
    payload = os.urandom(5000)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    moov = video_moov(data_offset=32, data_size=len(payload))
    path = tmp_path / "large.mp4"
    path.write_bytes(ftyp + mdat + moov)
    assert check_complete(path).complete
    path.write_bytes(ftyp + mdat[:-10] + moov)  # the 64-bit size now overshoots
    assert check_complete(path).state != "complete"


def test_synthetic_mp4_helper_is_complete(tmp_path: Path) -> None:
    assert check_complete(make_mp4(tmp_path / "a.mp4", 100_000)).complete


def test_an_mp4_without_a_video_track_is_invalid_and_says_the_fix(tmp_path: Path) -> None:
    audio = check_complete(make_mp4(tmp_path / "memo.mp4", 20_000, handler=b"soun"))
    assert audio.state == "invalid"
    assert "no video track (only audio)" in audio.reason
    assert "Export it with a video track" in audio.reason
    bare = check_complete(make_mp4(tmp_path / "bare.mp4", 20_000, handler=None))
    assert bare.state == "invalid" and "no video track (no tracks)" in bare.reason


def _ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, str(out)], check=True, timeout=60)
    return out


@needs_ffmpeg
def test_ffmpeg_audio_only_mp4_is_invalid(tmp_path: Path) -> None:
    audio = _ffmpeg(tmp_path / "sine.mp4", "-f", "lavfi", "-i", "sine", "-t", "1")
    result = check_complete(audio)
    assert result.state == "invalid" and "no video track (only audio)" in result.reason


@needs_ffmpeg
def test_ffmpeg_video_mp4_and_a_quicktime_movie_named_mp4_are_complete(tmp_path: Path) -> None:
    source = ("-f", "lavfi", "-i", "testsrc=duration=3:rate=5")
    assert check_complete(_ffmpeg(tmp_path / "video.mp4", *source)).complete
    # A QuickTime movie (as phones record) has a second, data-handler `hdlr` in each track;
    # it must not hide the video handler.
    movie = _ffmpeg(tmp_path / "phone.mp4", *source, "-c:v", "mpeg4", "-f", "mov")
    assert b"dhlr" in movie.read_bytes()
    assert check_complete(movie).complete


@needs_zip
def test_zip_cli_archive_whole_and_truncated(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        (photos / f"{i}.JPG").write_bytes(os.urandom(20_000))
    archive = tmp_path / "cli.zip"
    subprocess.run(["zip", "-qr", str(archive), "photos"], cwd=tmp_path, check=True)
    assert check_complete(archive).complete
    size = archive.stat().st_size
    for keep in (size - 1, size // 2, 100):
        assert check_complete(truncate(archive, keep)).state == "incomplete"


@needs_zip
def test_zip_cli_archive_without_images_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here")
    archive = tmp_path / "docs.zip"
    subprocess.run(["zip", "-q", str(archive), "notes.txt"], cwd=tmp_path, check=True)
    result = check_complete(archive)
    assert result.state == "invalid" and "no images" in result.reason


def test_zip64_archive_is_complete(tmp_path: Path) -> None:
    # More than 65,535 entries forces the zip64 end-of-central-directory records.
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(65_600):
            archive.writestr(f"f/{i}.png" if i % 1000 == 0 else f"f/{i}.txt", b"")
    tail = path.read_bytes()[-200:]
    assert b"PK\x06\x06" in tail and b"PK\x06\x07" in tail
    assert check_complete(path).complete
    assert check_complete(truncate(path, path.stat().st_size - 30)).state == "incomplete"


def test_zip_with_a_comment_is_complete(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "c.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.comment = b"x" * 3000
    assert check_complete(path).complete


def test_random_bytes_named_zip_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.zip"
    path.write_bytes(os.urandom(50_000))
    result = check_complete(path)
    assert result.state == "invalid" and "not a zip" in result.reason


def test_empty_zip_archive_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "empty-archive.zip"
    zipfile.ZipFile(path, "w").close()
    assert check_complete(path).state == "invalid"


def test_zero_byte_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    path.write_bytes(b"")
    result = check_complete(path)
    assert result.state == "invalid" and "empty" in result.reason
