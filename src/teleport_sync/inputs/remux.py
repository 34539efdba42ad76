"""QuickTime `.mov` to MP4 without re-encoding: the same packets, in the container Teleport takes.

Phones and cameras write `.mov` (the same ISO base media family as MP4, usually H.264 or HEVC).
The video packets (and AAC/MP3/ALAC audio, when present) are copied as they are into an MP4 with
its index first (`faststart`); nothing is decoded or encoded. Streams MP4 cannot carry are left
out (timecode, PCM audio: Teleport uses only the picture); a video codec MP4 cannot carry
(ProRes, raw video) refuses the file with the one-line ffmpeg command, as does a missing PyAV.

PyAV is native code that can abort the process, so the daemon runs the remux in a child
(`python -m teleport_sync.inputs.remux SRC DEST`). The child writes `DEST.tmp` and renames it
over DEST only when complete: a remux killed midway leaves no DEST and is simply done again.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..children import dies_with_parent
from ..private import private_dirs
from .identity import InputProblem

QUICKTIME_SUFFIXES = (".mov", ".qt")
# Codecs the MP4 muxer takes as they are (ffmpeg's mp4 codec tags, the ones cameras write).
VIDEO_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg"})
AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})
# Exit status of the child for "this file cannot be remuxed" (its one line on stderr says why).
CANNOT = 3


def is_quicktime(path: Path) -> bool:
    return path.suffix.lower() in QUICKTIME_SUFFIXES


def ffmpeg_fix(path: Path) -> str:
    """The one-line command that makes an MP4 of `path` without re-encoding."""
    out = path.with_suffix(".mp4")
    return (
        f"ffmpeg -i {shlex.quote(str(path))} -c copy -movflags +faststart {shlex.quote(str(out))}"
    )


def refusal(path: Path, why: str) -> str:
    return (
        f"{path}: a QuickTime movie that cannot be remuxed to MP4 here ({why}); remux it "
        f"without re-encoding, then drop the .mp4 here: {ffmpeg_fix(path)}"
    )


def remux_in_child(source: Path, dest: Path, timeout: float = 600.0) -> None:
    """Make `dest` (an MP4 of `source`'s packets) in a child process; InputProblem if it
    cannot be done (the sentence names the ffmpeg command), retryable if the child died."""
    done = subprocess.run(
        [sys.executable, "-m", "teleport_sync.inputs.remux", str(source), str(dest)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=dies_with_parent(),  # no orphan writing the work folder after a kill -9
    )
    if done.returncode == 0 and dest.exists():
        return
    why = (done.stderr.strip().splitlines() or ["the remux stopped"])[-1]
    raise InputProblem(refusal(source, why), retryable=done.returncode != CANNOT)


def remux(source: Path, dest: Path) -> None:
    """Copy `source`'s packets into the MP4 `dest` (through `dest.tmp`); raises ValueError
    naming why it cannot be done."""
    try:
        import av
    except ImportError:
        raise ValueError("PyAV is not installed: pip install 'teleport-sync[preflight]'") from None
    partial = dest.with_name(dest.name + ".tmp")
    with av.open(str(source)) as inp:
        video = [s for s in inp.streams.video]
        if not video:
            raise ValueError("it has no video track")
        codec = video[0].codec_context.name
        if codec not in VIDEO_CODECS:
            raise ValueError(f"its video is {codec}, which MP4 cannot carry as it is")
        audio = [s for s in inp.streams.audio if s.codec_context.name in AUDIO_CODECS][:1]
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in [video[0], *audio]}
            for packet in inp.demux(*mapping):
                if packet.dts is None:
                    continue  # the demuxer's end-of-stream marker
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, dest)


class _Input(Protocol):
    """What a remux needs of a journal row (`journal.FileRecord` is one)."""

    id: int
    path: str

    @property
    def identity(self) -> object: ...


class Remuxes:
    """The journal's work folder of remuxed .mov files (`engine.ports.Sources`): one MP4 per
    input version, named by its row and fingerprint; made once, reused by a resumed upload,
    removed once its capture is uploaded."""

    def __init__(self, folder: Path, run: Callable[[Path, Path], None] = remux_in_child) -> None:
        self.folder = folder
        self._run = run

    def path_for(self, record: _Input) -> Path:
        fingerprint = str(getattr(record.identity, "fingerprint", ""))[:16]
        return self.folder / f"{record.id}-{fingerprint}.mp4"

    def source_for(self, record: _Input) -> Path:
        path = Path(record.path)
        if not is_quicktime(path):
            return path
        made = self.path_for(record)
        if made.exists():
            return made  # only a complete remux gets this name (the child renames it last)
        private_dirs(self.folder)
        for stale in self.folder.glob(f"{record.id}-*"):
            stale.unlink(missing_ok=True)  # an earlier version's, or a remux cut short
        self._run(path, made)
        return made

    def done(self, record: _Input) -> None:
        for made in self.folder.glob(f"{record.id}-*"):
            made.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    source, dest = Path(argv[0]), Path(argv[1])
    try:
        remux(source, dest)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return CANNOT
    except Exception as exc:  # PyAV's errors: a damaged file, a muxer refusal
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return CANNOT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
