"""Hostile archives for the pre-flight bounds, made cheaply: what they inflate to is huge, what
they cost to write is not (flat pictures and zeros compress to almost nothing, and a member
repeated is compressed once)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path


def flat_png(width: int, height: int, rgb: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    """A valid RGB PNG of one colour, written row by row (never `width`x`height` in memory)."""
    row = b"\0" + bytes(rgb) * width  # filter type 0, then the pixels
    squeeze = zlib.compressobj(1)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def zip_bomb(path: Path, members: int, member_bytes: int) -> Path:
    """`members` deflated members of `member_bytes` zeros each, named IMG_0000.jpg ...: the
    zeros are deflated once and the same bytes written for every member."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    crc, packed, left = 0, io.BytesIO(), member_bytes
    while left:
        piece = block[: min(left, len(block))]
        crc = zlib.crc32(piece, crc)
        packed.write(squeeze.compress(piece))
        left -= len(piece)
    packed.write(squeeze.flush())
    data = packed.getvalue()
    return repeated_zip(path, members, data, crc, member_bytes, zipfile.ZIP_DEFLATED, digits=4)


def repeated_zip(
    path: Path,
    members: int,
    data: bytes,
    crc: int | None = None,
    size: int | None = None,
    method: int = zipfile.ZIP_STORED,
    *,
    digits: int = 7,
) -> Path:
    """A zip of `members` copies of `data` (already compressed by `method`, inflating to `size`
    bytes with `crc`), named IMG_0000000.jpg ... (`digits` wide); written directly, with a
    zip64 end record past 65,535 entries (a million in seconds, where zipfile takes minutes)."""
    crc = zlib.crc32(data) if crc is None else crc
    size = len(data) if size is None else size
    central, offset = io.BytesIO(), 0
    with path.open("wb") as out:
        for i in range(members):
            name = f"IMG_{i:0{digits}d}.jpg".encode()
            fixed = struct.pack(
                "<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(data), size, len(name), 0
            )
            out.write(b"PK\x03\x04" + fixed + name + data)
            placed = struct.pack("<HHHII", 0, 0, 0, 0, offset)  # comment, disk, attributes, where
            central.write(b"PK\x01\x02" + struct.pack("<H", 20) + fixed + placed + name)
            offset += 4 + len(fixed) + len(name) + len(data)
        directory = central.getvalue()
        out.write(directory)
        count = members
        if members > 0xFFFF:  # the zip64 end record, its locator, then the classic record
            where = offset + len(directory)
            record = struct.pack(
                "<QHHIIQQQQ", 44, 45, 45, 0, 0, members, members, len(directory), offset
            )
            out.write(b"PK\x06\x06" + record)
            out.write(b"PK\x06\x07" + struct.pack("<IQI", 0, where, 1))
            count = 0xFFFF
        end = struct.pack("<HHHHIIH", 0, 0, count, count, len(directory), offset, 0)
        out.write(b"PK\x05\x06" + end)
    return path
