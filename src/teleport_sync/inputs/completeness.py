"""Is a file that stopped changing complete as a format? Read from its structure alone.

A file that has stopped changing may still be unfinished (a camera that writes `moov` last, a
copy stalled on a slow share). These checks read only the structure, never the whole file,
and say one of three things: complete, incomplete (look again later), or invalid (never).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..models import InputDataFormat
from .identity import input_format_for, not_a_file, special_kind
from .mp4boxes import VIDEO, describe_handlers, handler, tracks

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".webp",
    ".bmp",
    ".dng",
    ".exr",
)
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP_CENTRAL = b"PK\x01\x02"
_EOCD_MAX_SEARCH = 22 + 65535  # the record plus the longest comment


@dataclass(frozen=True)
class Completeness:
    state: str  # "complete", "incomplete" or "invalid"
    reason: str = ""

    @property
    def complete(self) -> bool:
        return self.state == "complete"


COMPLETE = Completeness("complete")


# The end of an incompleteness reason that guesses the file is still being written.
_STILL_WRITTEN_GUESS = re.compile(r"( yet)? \([^()]*\?\)$")


def settled_reason(reason: str) -> str:
    """An incompleteness reason for a file known to have stopped changing: without its guess
    that the file is still being written ("no moov box yet (still copying?)")."""
    return _STILL_WRITTEN_GUESS.sub("", reason)


def _incomplete(reason: str) -> Completeness:
    return Completeness("incomplete", reason)


def _invalid(reason: str) -> Completeness:
    return Completeness("invalid", reason)


def check_complete(path: Path) -> Completeness:
    """Is `path` a whole, valid input of its format? Raises OSError if it cannot be read."""
    fmt = input_format_for(path)
    info = path.stat()
    kind = special_kind(info.st_mode)
    if kind is not None:  # never opened: a FIFO would block, a device never end
        return _invalid(not_a_file(kind))
    size = info.st_size
    if size == 0:
        return _invalid("the file is empty (0 bytes)")
    with path.open("rb") as handle:
        if fmt is InputDataFormat.BULK_IMAGES:
            return _check_zip(handle, size)
        return _check_mp4(handle, size)


def _check_zip(handle: BinaryIO, size: int) -> Completeness:
    head = handle.read(4)
    if head not in (_ZIP_LOCAL, _ZIP_EOCD):
        return _invalid("not a zip archive (it does not start with a zip header)")
    found = _directory(handle, size)
    if isinstance(found, Completeness):
        return found
    entries, cd_size, cd_offset = found
    if entries == 0:
        return _invalid("the zip archive is empty; it must contain images (.jpg, .png, ...)")
    names = _zip_names(handle, cd_offset, cd_size, entries)
    if names is None:
        return _invalid("the zip's central directory is corrupt")
    if not any(name.lower().endswith(IMAGE_SUFFIXES) for name in names):
        return _invalid(
            f"the zip archive holds {len(names)} file(s) but no images (.jpg, .png, .tif, ...)"
        )
    return COMPLETE


def _directory(handle: BinaryIO, size: int) -> tuple[int, int, int] | Completeness:
    """(entries, size, offset) of the zip's central directory, from its end record; or why
    it cannot be found yet."""
    search = min(size, _EOCD_MAX_SEARCH)
    handle.seek(size - search)
    tail = handle.read(search)
    at = tail.rfind(_ZIP_EOCD)
    while at >= 0 and at + 22 > len(tail):
        at = tail.rfind(_ZIP_EOCD, 0, at)
    if at < 0:
        return _incomplete("the zip has no end-of-central-directory record yet (still copying?)")
    (_, _disk, _, _, entries, cd_size, cd_offset, _) = struct.unpack(
        "<4sHHHHIIH", tail[at : at + 22]
    )
    eocd_pos = size - search + at
    if entries == 0xFFFF or cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        zip64 = _zip64_directory(handle, eocd_pos)
        if zip64 is None:
            return _incomplete("the zip64 end-of-central-directory record is missing")
        entries, cd_size, cd_offset = zip64
    if cd_offset + cd_size > size:
        return _incomplete("the zip's central directory points past the end of the file")
    return entries, cd_size, cd_offset


def zip_entry_count(path: Path) -> int | None:
    """The entries a zip's end record declares (its last 64 KiB are read, never the directory
    itself: a directory of millions of entries costs nothing to count); None without one."""
    with path.open("rb") as handle:
        found = _directory(handle, path.stat().st_size)
    return None if isinstance(found, Completeness) else found[0]


def _zip64_directory(handle: BinaryIO, eocd_pos: int) -> tuple[int, int, int] | None:
    if eocd_pos < 20:
        return None
    handle.seek(eocd_pos - 20)
    locator = handle.read(20)
    if locator[:4] != _ZIP64_LOCATOR:
        return None
    (record_offset,) = struct.unpack("<Q", locator[8:16])
    handle.seek(record_offset)
    record = handle.read(56)
    if len(record) < 56 or record[:4] != _ZIP64_EOCD:
        return None
    entries, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
    return entries, cd_size, cd_offset


def _zip_names(handle: BinaryIO, offset: int, size: int, entries: int) -> list[str] | None:
    """File names from the central directory, reading it in blocks, not whole."""
    handle.seek(offset)
    names: list[str] = []
    for _ in range(entries):
        fixed = handle.read(46)
        if len(fixed) < 46 or fixed[:4] != _ZIP_CENTRAL:
            return None
        name_len, extra_len, comment_len = struct.unpack("<HHH", fixed[28:34])
        raw = handle.read(name_len)
        handle.seek(extra_len + comment_len, 1)
        names.append(raw.decode("utf-8", "replace"))
    return names


def _check_mp4(handle: BinaryIO, size: int) -> Completeness:
    offset = 0
    seen: list[bytes] = []
    moov = (0, 0)
    while offset < size:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            return _incomplete("the MP4 ends inside a box header (still being written?)")
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if not _printable(box_type):
            if not seen:
                return _invalid("not an MP4 video (no ISO media box at the start)")
            return _invalid(f"the MP4 is corrupt at byte {offset} (not a box)")
        if not seen and box_type not in (b"ftyp", b"styp", b"free", b"skip", b"wide"):
            return _invalid("not an MP4 video (it does not begin with an ftyp box)")
        if box_size == 1:
            if len(header) < 16:
                return _incomplete("the MP4 ends inside a box header (still being written?)")
            (box_size,) = struct.unpack(">Q", header[8:16])
            if box_size < 16:
                return _invalid(f"the MP4 has a malformed box at byte {offset}")
        elif box_size == 0:
            box_size = size - offset  # "extends to the end of the file"
        elif box_size < 8:
            return _invalid(f"the MP4 has a malformed box at byte {offset}")
        seen.append(box_type)
        if box_type == b"moov":
            moov = (offset, offset + box_size)
        offset += box_size
    if offset > size:
        return _incomplete("the MP4's last box runs past the end of the file (still writing?)")
    if b"ftyp" not in seen:
        return _invalid("not an MP4 video (no ftyp box)")
    if b"moov" not in seen:
        return _incomplete("the MP4 has no moov box yet (the recording is not finalized)")
    return _check_video_track(handle, *moov)


def _check_video_track(handle: BinaryIO, start: int, end: int) -> Completeness:
    """Teleport trains on video frames: a movie with no video track (a voice memo, a music
    export) would cost a capture that can only fail, so it is refused here."""
    handlers = [handler(track) for track in tracks(handle, start, end, {b"hdlr"})]
    if VIDEO in handlers:
        return COMPLETE
    return _invalid(
        f"the MP4 has no video track ({describe_handlers(handlers)}); Teleport needs a video. "
        "Export it with a video track and drop it again"
    )


def _printable(box_type: bytes) -> bool:
    return all(32 <= b < 127 for b in box_type)
