"""What the emulator serves for a finished capture: a model per documented profile, previews.

Each profile gets a plausible artefact built from the same Gaussians, so a viewer could load it:
`ply` one binary PLY; `sogs-sh0` one zip of six `.bin`/`.json` files; `fragment-chunk1` (float32)
and `fragment-float16` several chunk files. `sd` quality has half the Gaussians of `hd`.
Everything is deterministic, so tests can rebuild the expected bytes with `model_files`.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator
from functools import cache

from .ply import GAUSSIAN_FIELDS, gaussian_splat_ply

PROFILES = ("ply", "sogs-sh0", "fragment-chunk1", "fragment-float16")
FRAGMENT_CHUNKS = 2
PREVIEW_SIZES = ((432, 576), (897, 1196))
_FLOATS = len(GAUSSIAN_FIELDS)


def splat_count(quality: str) -> int:
    return 1024 if quality == "sd" else 2048


@cache
def model_files(profile: str, quality: str = "hd") -> tuple[tuple[str, bytes], ...]:
    """The files of `profile`, as (name, bytes); empty for a profile the emulator does not make."""
    ply = gaussian_splat_ply(splat_count(quality))
    if profile == "ply":
        return (("model.ply", ply),)
    rows = _rows(ply)
    if profile == "sogs-sh0":
        return (("model.zip", _sogs_zip(rows)),)
    if profile in ("fragment-chunk1", "fragment-float16"):
        kind = "e" if profile.endswith("float16") else "f"
        return tuple(
            (f"{i}.bin", _fragment(rows[i::FRAGMENT_CHUNKS], kind)) for i in range(FRAGMENT_CHUNKS)
        )
    return ()


def _rows(ply: bytes) -> list[tuple[float, ...]]:
    body = ply[ply.index(b"end_header\n") + len(b"end_header\n") :]
    return list(struct.iter_unpack("<" + "f" * _FLOATS, body))


def _sogs_zip(rows: list[tuple[float, ...]]) -> bytes:
    """Six files, one per attribute group, as a Self-Organizing Gaussians bundle lays them out."""
    groups = {"means": (0, 3), "sh0": (3, 6), "opacities": (6, 7), "scales": (7, 10)}
    groups["quats"] = (10, 14)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        meta = {"count": len(rows), "files": {}}
        for name, (start, end) in groups.items():
            data = b"".join(struct.pack(f"<{end - start}f", *row[start:end]) for row in rows)
            bundle.writestr(_entry(f"{name}.bin"), data)
            meta["files"][name] = {"file": f"{name}.bin", "components": end - start}
        bundle.writestr(_entry("meta.json"), json.dumps(meta, indent=1))
    return buffer.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed timestamp: the same bundle, byte for byte, whenever it is built.
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _fragment(rows: list[tuple[float, ...]], kind: str) -> bytes:
    header = struct.pack("<4sII", b"FRAG", len(rows), _FLOATS)
    return header + b"".join(struct.pack(f"<{_FLOATS}{kind}", *row) for row in rows)


# -- a large model of zeros, for memory tests ------------------------------------------------


@cache
def sparse_ply_header(total: int) -> bytes:
    """The header of a PLY of zeros that is `total` bytes long, give or take one Gaussian."""
    stride = 4 * _FLOATS
    lines = [
        "ply",
        "format binary_little_endian 1.0",
        f"element vertex {max(0, (total - 1024) // stride)}",
    ]
    lines += [f"property float {name}" for name in GAUSSIAN_FIELDS]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def sparse_ply_size(total: int) -> int:
    return len(sparse_ply_header(total)) + max(0, (total - 1024) // (4 * _FLOATS)) * 4 * _FLOATS


def iter_sparse_ply(total: int, start: int, end: int, block: int = 1 << 20) -> Iterator[bytes]:
    """Bytes `start`..`end` (exclusive) of the zero-filled model, without holding it in memory."""
    header = sparse_ply_header(total)
    position = start
    if position < len(header):
        piece = header[position:end]
        yield piece
        position += len(piece)
    zeros = bytes(block)
    while position < end:
        n = min(block, end - position)
        yield zeros[:n]
        position += n


# -- previews --------------------------------------------------------------------------------


@cache
def preview_png(width: int, height: int) -> bytes:
    """A gradient PNG of the given size (a stand-in for a rendered view of the splat)."""
    row_bytes = bytes((x * 255 // max(1, width - 1)) for x in range(width))
    raw = b"".join(
        b"\0" + bytes(v for x in row_bytes for v in (x, y % 256, 128)) for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


# A 1x1 two-frame GIF89a (what a turntable gif is, minus the frames).
PREVIEW_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    b"!\xf9\x04\x00\x0a\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"
    b"!\xf9\x04\x00\x0a\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02L\x01\x00"
    b";"
)
