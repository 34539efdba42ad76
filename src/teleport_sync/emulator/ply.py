"""A small, valid 3D Gaussian-splat `.ply`, as the emulator's finished model."""

from __future__ import annotations

import math
import random
import struct

GAUSSIAN_FIELDS = [
    "x",
    "y",
    "z",
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
]


def gaussian_splat_ply(count: int = 2048, *, seed: int = 0) -> bytes:
    """A binary little-endian PLY of `count` Gaussians on a sphere, deterministic for a seed."""
    rng = random.Random(seed)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    header += [f"property float {name}" for name in GAUSSIAN_FIELDS]
    header.append("end_header")
    body = bytearray()
    row = struct.Struct("<" + "f" * len(GAUSSIAN_FIELDS))
    for _ in range(count):
        theta = rng.uniform(0, 2 * math.pi)
        z = rng.uniform(-1, 1)
        r = math.sqrt(1 - z * z)
        # A unit quaternion, so viewers that normalise nothing still render it.
        q = [rng.gauss(0, 1) for _ in range(4)]
        norm = math.sqrt(sum(v * v for v in q)) or 1.0
        body += row.pack(
            r * math.cos(theta),
            r * math.sin(theta),
            z,
            rng.uniform(-1, 1),
            rng.uniform(-1, 1),
            rng.uniform(-1, 1),
            rng.uniform(-2, 4),
            math.log(0.02),
            math.log(0.02),
            math.log(0.02),
            *(v / norm for v in q),
        )
    return ("\n".join(header) + "\n").encode("ascii") + bytes(body)
