"""A thumbnail of a downloaded Gaussian-splat `.ply`, drawn here, with no GPU and no dependency.

Each splat's centre is projected (orthographic, seen from a little above and to the side) and
painted back to front in its base colour: the SH DC term gives `0.5 + C0 * f_dc` per channel, and
the sigmoid of `opacity` its alpha. A large scan is sampled evenly down to `max_points` splats, so
a thumbnail costs well under a second whatever the model's size.
"""

from __future__ import annotations

import math
import mmap
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SH_C0 = 0.28209479177387814
BACKGROUND = (22, 24, 29)
_PLY_TYPES = {
    "char": "b",
    "int8": "b",
    "uchar": "B",
    "uint8": "B",
    "short": "h",
    "int16": "h",
    "ushort": "H",
    "uint16": "H",
    "int": "i",
    "int32": "i",
    "uint": "I",
    "uint32": "I",
    "float": "f",
    "float32": "f",
    "double": "d",
    "float64": "d",
}


class PlyError(ValueError):
    """The file is not a binary little-endian splat `.ply` this renderer understands."""


@dataclass(frozen=True)
class Splat:
    x: float
    y: float
    z: float
    rgb: tuple[float, float, float]
    alpha: float


def _header(data: bytes | mmap.mmap) -> tuple[int, list[tuple[str, str]], int]:
    """(vertex count, [(name, struct code)], offset of the body)."""
    end = data.find(b"end_header\n", 0, 1 << 16)
    if data[:4] != b"ply\n" or end < 0:
        raise PlyError("not a PLY file (no 'ply' magic or no end_header)")
    count, props, in_vertex = 0, [], False
    for line in data[:end].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format" and words[1] != "binary_little_endian":
            raise PlyError(f"PLY format {words[1]} is not supported (binary_little_endian only)")
        if words[0] == "element":
            if count and not in_vertex:
                break
            in_vertex = words[1] == "vertex"
            if in_vertex:
                count = int(words[2])
            elif not count:
                raise PlyError("the vertex element must come first")
        elif words[0] == "property" and in_vertex:
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise PlyError(f"unsupported vertex property: {line.strip()}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    return count, props, end + len(b"end_header\n")


def read_splats(data: bytes | mmap.mmap, max_points: int = 60000) -> list[Splat]:
    """Splat centres and colours from a `.ply`'s bytes, sampled evenly down to `max_points`."""
    count, props, offset = _header(data)
    names = [name for name, _ in props]
    for needed in ("x", "y", "z"):
        if needed not in names:
            raise PlyError(f"the vertices have no '{needed}' property")
    row = struct.Struct("<" + "".join(code for _, code in props))
    if offset + count * row.size > len(data):
        raise PlyError("the file is shorter than its header says (truncated?)")
    index = {name: i for i, name in enumerate(names)}
    has_dc = all(f"f_dc_{c}" in index for c in range(3))
    step = max(1, math.ceil(count / max_points))
    splats = []
    for n in range(0, count, step):
        values = row.unpack_from(data, offset + n * row.size)
        if has_dc:
            rgb = tuple(0.5 + SH_C0 * values[index[f"f_dc_{c}"]] for c in range(3))
        else:
            rgb = (0.8, 0.8, 0.8)
        opacity = values[index["opacity"]] if "opacity" in index else 4.0
        alpha = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, opacity))))
        splats.append(
            Splat(values[index["x"]], values[index["y"]], values[index["z"]], rgb, alpha)  # type: ignore[arg-type]
        )
    return splats


def _view(splats: list[Splat], yaw: float, pitch: float) -> list[tuple[float, float, float, Splat]]:
    """Each splat as (screen x, screen y, depth) seen from `yaw`/`pitch`; y up, depth away."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    out = []
    for s in splats:
        x1 = cy * s.x + sy * s.z
        z1 = -sy * s.x + cy * s.z
        y2 = cp * s.y - sp * z1
        z2 = sp * s.y + cp * z1
        out.append((x1, y2, z2, s))
    return out


def _bounds(values: list[float]) -> tuple[float, float]:
    """The 2nd and 98th percentiles: a few stray splats must not shrink the model to a dot."""
    ordered = sorted(values)
    lo = ordered[int(0.02 * (len(ordered) - 1))]
    hi = ordered[int(0.98 * (len(ordered) - 1))]
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def render(splats: list[Splat], width: int = 320, height: int = 240) -> bytes:
    """RGB pixels (row-major, 3 bytes each) of the splats; the background where there are none."""
    pixels = bytearray(bytes(BACKGROUND) * (width * height))
    if not splats:
        return bytes(pixels)
    # Splat files are usually y-down (OpenCV cameras): flip so the model stands upright.
    viewed = _view(splats, yaw=math.radians(35), pitch=math.radians(-20))
    xs_lo, xs_hi = _bounds([v[0] for v in viewed])
    ys_lo, ys_hi = _bounds([v[1] for v in viewed])
    scale = 0.9 * min(width / (xs_hi - xs_lo), height / (ys_hi - ys_lo))
    cx, cy = (xs_lo + xs_hi) / 2, (ys_lo + ys_hi) / 2
    radius = 1 if len(splats) > 20000 else 2
    for sx, sy, _depth, s in sorted(viewed, key=lambda v: -v[2]):
        px = int(width / 2 + (sx - cx) * scale)
        py = int(height / 2 + (sy - cy) * scale)
        colour = [max(0, min(255, round(255 * c))) for c in s.rgb]
        for yy in range(py - radius + 1, py + radius):
            if not 0 <= yy < height:
                continue
            for xx in range(px - radius + 1, px + radius):
                if 0 <= xx < width:
                    i = 3 * (yy * width + xx)
                    for c in range(3):
                        pixels[i + c] = round(pixels[i + c] * (1 - s.alpha) + colour[c] * s.alpha)
    return bytes(pixels)


def png(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit RGB PNG of `pixels` (no filtering; zlib does the work)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    stride = 3 * width
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def load_splats(path: Path) -> list[Splat]:
    """A sample of the `.ply` at `path`; PlyError or OSError when it cannot be read."""
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            raise PlyError("the file is empty")
        # Mapped, not read: a real scan is hundreds of MiB and only a sample is looked at.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return read_splats(data)


def thumbnail_png(path: Path, width: int = 320, height: int = 240) -> bytes:
    """The PNG thumbnail of the `.ply` at `path`; PlyError or OSError when it cannot be read."""
    return png(render(load_splats(path), width, height), width, height)


def frame(splats: list[Splat]) -> tuple[tuple[float, float, float], float]:
    """Where the model is: its median centre and the radius holding 98 % of its splats.

    The 3D view starts from this, so a scan in survey coordinates is not off screen.
    """
    if not splats:
        return (0.0, 0.0, 0.0), 1.0
    centre = tuple(sorted(getattr(s, axis) for s in splats)[len(splats) // 2] for axis in "xyz")
    distances = sorted(
        math.dist((s.x, s.y, s.z), centre)
        for s in splats  # type: ignore[arg-type]
    )
    radius = distances[int(0.98 * (len(distances) - 1))] or 1.0
    return (centre[0], centre[1], centre[2]), radius
