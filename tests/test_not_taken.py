"""Nothing in a watch folder is ignored in silence (issue 31): a file the daemon does not take
for its type gets a `rejected` row saying why, once; a QuickTime .mov names the ffmpeg command
that remuxes it to MP4 without re-encoding; sidecars and hidden files stay quiet."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs import identify
from teleport_sync.inputs.remux import Remuxes

from .helpers import make_zip, wait_for
from .test_faults import DaemonProcess, daemon_config, status


def test_every_file_gets_a_row_or_a_reason(emulator: EmulatorServer, tmp_path: Path) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    (inbox / "readme.txt").write_text("shot on tuesday")  # there before the start
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "readme.txt" in status(config), 30, "the text file's row")
        make_zip(inbox / "scan.zip")
        (inbox / "scan.zip.teleport.toml").write_text('name = "Scan"\n')  # a sidecar: an input's
        (inbox / ".DS_Store").write_bytes(b"\0")  # hidden: quiet
        (inbox / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not zipped")
        wait_for(lambda: "photo.jpg" in status(config), 30, "the loose photo's row")
        wait_for(
            lambda: status(config).get("scan.zip", {}).get("capture_state") == "READY",
            30,
            "the capture",
        )
        rows = status(config)
    finally:
        assert daemon.stop() == 0
    assert set(rows) == {"readme.txt", "photo.jpg", "scan.zip"}
    for name in ("readme.txt", "photo.jpg"):
        assert rows[name]["phase"] == "rejected"
        assert rows[name]["reason"].startswith(str(inbox / name))
        assert "not a capture (zip, mp4 or mov wanted)" in rows[name]["reason"]
    log = daemon.log.read_text()
    assert log.count('"not taken"') == 2, "once per file"


def make_mov(path: Path, *video: str) -> Path:
    """A real QuickTime movie from ffmpeg: one second of test picture (and a PCM tone, which
    MP4 cannot carry as it is: the remux leaves it out)."""
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "1",
            *video,
            "-c:a",
            "pcm_s16le",
            str(path),
        ],
        check=True,
    )
    return path


def video_packets(data: bytes | Path) -> list[bytes]:
    import av

    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source) as movie:
        assert movie.streams.video[0].codec_context.name == "h264"
        return [bytes(p) for p in movie.demux(movie.streams.video[0]) if p.size]


needs_tools = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or importlib.util.find_spec("av") is None,
    reason="ffmpeg makes the .mov, PyAV remuxes it",
)


@needs_tools
def test_a_quicktime_movie_is_sent_as_its_remux_to_mp4(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    movie = make_mov(tmp_path / "IMG_0042.MOV", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    work = tmp_path / "work"  # beside the journal
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: '"watching"' in daemon.log.read_text(), 30, "the daemon")
        shutil.copyfile(movie, inbox / movie.name)
        wait_for(
            lambda: status(config).get(movie.name, {}).get("capture_state") == "READY",
            60,
            "the movie's capture",
        )
        row = status(config)[movie.name]
    finally:
        assert daemon.stop() == 0
    assert row["path"] == str(inbox / movie.name) and row["bytesize"] == movie.stat().st_size
    sent = emulator.object_bytes(str(row["eid"]))
    assert sent[4:8] == b"ftyp" and sent != movie.read_bytes()
    assert video_packets(sent) == video_packets(movie), "the same packets, not re-encoded"
    assert list(work.iterdir()) == [], "the remux is removed once uploaded"


@needs_tools
def test_a_movie_mp4_cannot_carry_is_refused_with_the_ffmpeg_command(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    movie = make_mov(tmp_path / "master.mov", "-c:v", "prores_ks")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: '"watching"' in daemon.log.read_text(), 30, "the daemon")
        shutil.copyfile(movie, inbox / movie.name)
        wait_for(
            lambda: status(config).get(movie.name, {}).get("phase") == "rejected",
            60,
            "the refusal",
        )
        row = status(config)[movie.name]
    finally:
        assert daemon.stop() == 0
    reason = str(row["reason"])
    assert reason.startswith(str(inbox / movie.name)) and "prores" in reason
    command = f"ffmpeg -i {inbox / movie.name} -c copy -movflags +faststart {inbox / 'master.mp4'}"
    assert reason.endswith(command)
    assert not emulator.backend.captures, "no capture made for it"


@needs_tools
def test_a_remux_cut_short_is_done_again(tmp_path: Path) -> None:
    """A daemon killed mid-remux leaves only `<row>-<fingerprint>.mp4.tmp`: the next attempt
    removes it and remuxes again; a finished remux is reused by a resumed upload."""
    movie = make_mov(tmp_path / "clip.mov", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    remuxes = Remuxes(tmp_path / "work")
    row = SimpleNamespace(id=7, path=str(movie), identity=identify(movie))
    made = remuxes.path_for(row)
    made.parent.mkdir()
    cut_short = made.with_name(made.name + ".tmp")
    cut_short.write_bytes(b"\0" * 100)
    assert remuxes.source_for(row) == made
    assert not cut_short.exists()
    assert video_packets(made) == video_packets(movie)
    before = made.stat().st_mtime_ns
    assert remuxes.source_for(row) == made and made.stat().st_mtime_ns == before
    remuxes.done(row)
    assert list((tmp_path / "work").iterdir()) == []
