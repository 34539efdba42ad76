"""How many frames an input holds, read from its structure before upload (never decoded).

A zip's images are counted from its central directory. An MP4's video frames are the sample
count of its video track (`stsz`/`stz2`, else the sum of `stts` runs) and its duration comes
from the track's `mdhd` (else the movie's `mvhd`). Only box headers and these small tables are
read, so a file of any size costs a few kilobytes of reading.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..models import InputDataFormat
from .completeness import IMAGE_SUFFIXES
from .mp4boxes import VIDEO, Track, handler, tracks

_WANTED = {b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"stsz", b"stz2", b"stts"}


@dataclass(frozen=True)
class FrameCount:
    frames: int | None
    duration_seconds: float | None = None


def count_frames(path: Path, fmt: InputDataFormat) -> FrameCount:
    """Frames in `path`, or FrameCount(None) when its structure does not say. Raises OSError."""
    if fmt is InputDataFormat.BULK_IMAGES:
        return FrameCount(zip_images(path))
    with path.open("rb") as handle:
        return mp4_frames(handle, path.stat().st_size)


def zip_images(path: Path) -> int | None:
    names = zip_image_names(path)
    return None if names is None else len(names)


def zip_image_names(path: Path) -> list[str] | None:
    """The images of a zip, by their path in it, in the archive's order; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [
                info.filename
                for info in archive.infolist()
                if not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES)
            ]
    except (zipfile.BadZipFile, ValueError):
        return None


def _sample_count(track: Track) -> int | None:
    for kind in (b"stsz", b"stz2"):
        table = track.get(kind)
        if table is not None and len(table) >= 12:
            # version/flags (4), sample_size or reserved+field_size (4), sample_count (4)
            return int(struct.unpack(">I", table[8:12])[0])
    stts = track.get(b"stts")
    if stts is not None and len(stts) >= 8:
        (entries,) = struct.unpack(">I", stts[4:8])
        runs = min(entries, (len(stts) - 8) // 8)
        return sum(struct.unpack(">I", stts[8 + 8 * i : 12 + 8 * i])[0] for i in range(runs))
    return None


def _duration(header: bytes | None) -> float | None:
    """Seconds from an `mdhd` or `mvhd` payload (version 0 or 1)."""
    if header is None or len(header) < 20:
        return None
    if header[0] == 1:
        if len(header) < 32:
            return None
        timescale, duration = struct.unpack(">IQ", header[20:32])
    else:
        timescale, duration = struct.unpack(">II", header[12:20])
    if timescale == 0 or duration in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return round(duration / timescale, 3)


def mp4_frames(handle: BinaryIO, size: int) -> FrameCount:
    movie: Track = {}
    for track in tracks(handle, 0, size, _WANTED, movie):
        if handler(track) != VIDEO:
            continue
        duration = _duration(track.get(b"mdhd")) or _duration(movie.get(b"mvhd"))
        return FrameCount(_sample_count(track), duration)
    return FrameCount(None, _duration(movie.get(b"mvhd")))


def video_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the first video track's sample entry (`stsd`), read from the boxes
    alone, before any decoder is opened; None when the file does not say."""
    with path.open("rb") as handle:
        for track in tracks(handle, 0, path.stat().st_size, {b"hdlr", b"stsd"}):
            entry = track.get(b"stsd", b"")
            if handler(track) == VIDEO and len(entry) >= 44:
                # version/flags, entry count; the entry's size and type, 6 reserved bytes, its
                # data reference index and 16 bytes of pre-defined fields; then the size.
                width, height = struct.unpack(">HH", entry[40:44])
                return width, height
    return None
