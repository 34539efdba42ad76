"""Sample inputs for `teleport-sync demo`: a zip of images and an MP4-structured video."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path


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
    """ftyp, mdat of `size` bytes of filler and a moov box: the top-level shape of an MP4."""
    partial = path.with_name(path.name + ".part")
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 0x200, b"isomiso2")
    mdat_body = os.urandom(size)
    mdat = struct.pack(">I4s", 8 + len(mdat_body), b"mdat") + mdat_body
    mvhd = struct.pack(">I4s", 8 + 100, b"mvhd") + bytes(100)
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    partial.write_bytes(ftyp + mdat + moov)
    partial.replace(path)
    return path
