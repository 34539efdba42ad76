"""Walking an MP4's (ISO BMFF) boxes: only headers and the few small boxes asked for are read.

Shared by the completeness check (does the movie hold a video track?) and the frame counter
(how many samples does that track have?), so both read a file the same way.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

# Boxes we descend into on the way to a track's handler and sample tables.
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
MAX_TABLE_BYTES = 64 << 20  # a sane bound on the tables we read whole (stts of hours of video)
VIDEO = b"vide"
# What a handler type means, in words for a reason shown to people.
HANDLER_WORDS = {
    b"soun": "audio",
    b"vide": "video",
    b"text": "text",
    b"sbtl": "subtitles",
    b"subt": "subtitles",
    b"meta": "metadata",
    b"hint": "hint",
    b"tmcd": "timecode",
}

Track = dict[bytes, bytes]


def boxes(handle: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, payload end) of the boxes between `start` and `end`."""
    out = []
    offset = start
    while offset + 8 <= end:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        payload = offset + 8
        if size == 1 and len(header) == 16:
            (size,) = struct.unpack(">Q", header[8:16])
            payload = offset + 16
        elif size == 0:
            size = end - offset
        if size < payload - offset or offset + size > end:
            break
        out.append((kind, payload, offset + size))
        offset += size
    return out


def _read(handle: BinaryIO, start: int, end: int) -> bytes:
    handle.seek(start)
    return handle.read(min(end - start, MAX_TABLE_BYTES))


def tracks(
    handle: BinaryIO, start: int, end: int, wanted: set[bytes], found: Track | None = None
) -> list[Track]:
    """Walk the container boxes between `start` and `end`; each `trak` yields the payloads of
    the `wanted` boxes it holds. Wanted boxes outside any track land in `found`."""
    found = {} if found is None else found
    out: list[Track] = []
    for kind, payload, box_end in boxes(handle, start, end):
        if kind == b"trak":
            track: Track = {}
            tracks(handle, payload, box_end, wanted, track)
            out.append(track)
        elif kind in CONTAINERS:
            out.extend(tracks(handle, payload, box_end, wanted, found))
        elif kind in wanted and kind not in found:
            body = _read(handle, payload, box_end)
            # QuickTime puts a second `hdlr` in `minf` naming the *data* handler ("dhlr",
            # e.g. "alis"); only the media handler in `mdia` says what the track is.
            if kind != b"hdlr" or body[4:8] != b"dhlr":
                found[kind] = body
    return out


def handler(track: Track) -> bytes:
    """The track's media handler type (b"vide", b"soun", ...), or b"" when it has none."""
    return track.get(b"hdlr", b"")[8:12]


def describe_handlers(handlers: list[bytes]) -> str:
    """The tracks a movie has, in words: "only audio", "no tracks", "only audio and text"."""
    if not handlers:
        return "no tracks"
    words = []
    for kind in handlers:
        word = HANDLER_WORDS.get(kind, kind.decode("ascii", "replace").strip() or "unknown")
        if word not in words:
            words.append(word)
    return "only " + " and ".join(words)
