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
    central, offset = io.BytesIO(), 0
    with path.open("wb") as out:
        for i in range(members):
            name = f"IMG_{i:04d}.jpg".encode()
            fixed = struct.pack(
                "<HHHHHIIIHH", 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, crc, len(data),
                member_bytes, len(name), 0,
            )  # fmt: skip
            out.write(b"PK\x03\x04" + fixed + name + data)
            placed = struct.pack("<HHHII", 0, 0, 0, 0, offset)  # comment, disk, attributes, where
            central.write(b"PK\x01\x02" + struct.pack("<H", 20) + fixed + placed + name)
            offset += 4 + len(fixed) + len(name) + len(data)
        directory = central.getvalue()
        out.write(directory)
        end = struct.pack("<HHHHIIH", 0, 0, members, members, len(directory), offset, 0)
        out.write(b"PK\x05\x06" + end)
    return path
