"""Sample inputs for `teleport-sync demo`: a zip of images and an MP4-structured video.

`write_demo_zip` and `write_demo_mp4` make real pictures (`pictures`: photos with a camera
that stood still at the end, which pre-flight warns about, and a steady walk) when the
preflight extra is installed; without it, and for tests that need only the structure, the
`write_sample_*` stand-ins hold bytes shaped like the formats (not decodable pictures).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path


def write_demo_zip(path: Path) -> Path:
    """The demo's photo zip: real photos when they can be made, else the stand-in."""
    try:
        from .pictures import write_photo_zip

        return write_photo_zip(path)
    except ImportError:
        return write_sample_zip(path)


def write_demo_mp4(path: Path) -> Path:
    """The demo's video: a real H.264 walk when it can be made, else the stand-in."""
    try:
        from .pictures import write_walk_mp4

        return write_walk_mp4(path)
    except ImportError:
        return write_sample_mp4(path)


def write_sample_zip(path: Path, images: int = 24, image_bytes: int = 48 * 1024) -> Path:
    """A zip of JPEG-named images, written under a temporary name and renamed, as copies are."""
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for i in range(images):
            archive.writestr(
                f"photos/IMG_{i:04d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(image_bytes)
            )
    partial.replace(path)
    return path


def write_sample_mp4(path: Path, size: int = 6 * 1024 * 1024) -> Path:
    """ftyp, an mdat of `size` bytes of filler and a moov whose one video track describes it:
    the shape of an MP4 as a camera writes it (moov last), though the frames are noise."""
    partial = path.with_name(path.name + ".part")
    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2")
    mdat = box(b"mdat", os.urandom(size))
    moov = video_moov(data_offset=len(ftyp) + 8, data_size=size)
    partial.write_bytes(ftyp + mdat + moov)
    partial.replace(path)
    return path


# -- a minimal movie box -----------------------------------------------------------------------
#
# The smallest `moov` that real MP4 readers (and frames.py) take as one video track: mvhd, then
# a trak with tkhd and mdia (mdhd, hdlr "vide", minf with vmhd, dinf and the sample tables).
# Every sample is one frame of `data_size // frames` bytes in a single chunk at `data_offset`.

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, payload: bytes) -> bytes:
    """One ISO BMFF box: 32-bit size, type, payload."""
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full(kind: bytes, flags: int, payload: bytes) -> bytes:
    """A "full box": version 0 and 24 bits of flags before the payload."""
    return box(kind, struct.pack(">I", flags) + payload)


def video_moov(
    *,
    frames: int = 30,
    fps: int = 10,
    data_offset: int = 0,
    data_size: int = 0,
    handler: bytes = b"vide",
) -> bytes:
    """A moov with one track of `frames` samples at `fps` (`handler` b"soun" makes the same
    movie audio-only, as a voice memo is)."""
    timescale, duration = fps * 100, frames * 100
    mvhd = _full(
        b"mvhd",
        0,
        struct.pack(">4IIH10x", 0, 0, timescale, duration, 0x10000, 0x100)
        + _MATRIX
        + bytes(24)
        + struct.pack(">I", 2),  # the next free track id
    )
    tkhd = _full(
        b"tkhd",
        3,  # enabled, in the movie
        struct.pack(">5I8x4H", 0, 0, 1, 0, duration, 0, 0, 0, 0)
        + _MATRIX
        + struct.pack(">2I", 160 << 16, 120 << 16),
    )
    mdhd = _full(b"mdhd", 0, struct.pack(">4I2H", 0, 0, timescale, duration, 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, bytes(4) + handler + bytes(12) + b"teleport-sync sample\0")
    minf = box(b"minf", _media_header(handler) + _dinf() + _stbl(frames, data_offset, data_size))
    mdia = box(b"mdia", mdhd + hdlr + minf)
    return box(b"moov", mvhd + box(b"trak", tkhd + mdia))


def _media_header(handler: bytes) -> bytes:
    if handler == b"soun":
        return _full(b"smhd", 0, bytes(4))
    return _full(b"vmhd", 1, bytes(8))


def _dinf() -> bytes:
    # One data reference: "url " with flag 1, meaning "the media is in this file".
    return box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1) + _full(b"url ", 1, b"")))


def _stbl(frames: int, data_offset: int, data_size: int) -> bytes:
    entry = box(
        b"mp4v",
        bytes(6)
        + struct.pack(">H", 1)  # data reference index
        + bytes(16)
        + struct.pack(">2H2I4xH", 160, 120, 0x480000, 0x480000, 1)
        + bytes(32)
        + struct.pack(">Hh", 0x18, -1),
    )
    stsd = _full(b"stsd", 0, struct.pack(">I", 1) + entry)
    stts = _full(b"stts", 0, struct.pack(">3I", 1, frames, 100))
    stsc = _full(b"stsc", 0, struct.pack(">4I", 1, 1, frames, 1))
    stsz = _full(b"stsz", 0, struct.pack(">2I", data_size // max(frames, 1), frames))
    stco = _full(b"stco", 0, struct.pack(">2I", 1, data_offset))
    return box(b"stbl", stsd + stts + stsc + stsz + stco)
