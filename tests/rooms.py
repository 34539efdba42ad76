"""Small 3D scenes for the pose check's tests, rendered with depth by a numpy ray caster.

A room is an axis-aligned box seen from inside, with boxes standing in it. Every face is
painted from one shared texture atlas at its own offset, looked up by the hit point's
world coordinates, so one surface looks the same from every view: what structure from motion
needs, and what crops of a flat picture (no depth) cannot give. `bare=True` paints each face one
flat colour instead (no texture to find features on).

Cameras are (position, a point looked at): an orbit around the middle, a pan from one spot, a
walk along a wall. Images are rendered at twice their size and averaged down (fewer jaggies
for SIFT to mistake for corners).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ATLAS = 1024
TEXELS_PER_METRE = 160.0


@dataclass(frozen=True)
class Box:
    low: tuple[float, float, float]
    high: tuple[float, float, float]


@dataclass
class Room:
    size: tuple[float, float, float] = (8.0, 8.0, 3.0)  # x, y (floor), z (up)
    boxes: list[Box] = field(default_factory=list)
    bare: bool = False
    seed: int = 3

    def __post_init__(self) -> None:
        self.atlas = _atlas(self.seed)
        rng = np.random.default_rng(self.seed + 1)
        self.flat = rng.uniform(60, 200, size=(64,))


def furnished_room(*, bare: bool = False) -> Room:
    """An 8 x 8 m room with a few boxes of different heights in the middle and by the walls."""
    boxes = [
        Box((-0.6, -0.5, 0.0), (0.5, 0.4, 1.1)),
        Box((0.7, -1.0, 0.0), (1.3, -0.3, 0.6)),
        Box((-1.2, 0.6, 0.0), (-0.5, 1.4, 1.7)),
        Box((0.4, 0.8, 0.0), (1.0, 1.3, 0.35)),
        Box((-3.8, -3.8, 0.0), (-2.8, -3.0, 1.4)),
        Box((2.9, 3.0, 0.0), (3.8, 3.8, 0.9)),
        Box((-1.5, 3.3, 0.0), (0.2, 3.9, 0.8)),
        Box((0.8, -3.9, 0.0), (2.2, -3.2, 1.2)),
    ]
    return Room(boxes=boxes, bare=bare)


def _atlas(seed: int) -> np.ndarray:
    """Grey texture: smooth noise at three scales plus scattered dark and light blobs."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((ATLAS, ATLAS), np.float32)
    for cells, weight in ((8, 0.35), (32, 0.35), (128, 0.3)):
        grid = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        grid[-1, :], grid[:, -1] = grid[0, :], grid[0, :]  # tiles without a seam
        texture += weight * _upsample(grid, ATLAS)
    # Blobs: sparse impulses blurred by a Gaussian (through the FFT; the atlas tiles).
    impulses = np.zeros((ATLAS, ATLAS), np.float32)
    spots = rng.integers(0, ATLAS, (2, 900))
    impulses[spots[0], spots[1]] = rng.choice((-1.0, 1.0), 900)
    frequency = np.fft.fftfreq(ATLAS)
    sigma = 4.0
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (frequency[:, None] ** 2 + frequency[None, :] ** 2))
    blobs = np.real(np.fft.ifft2(np.fft.fft2(impulses) * kernel))
    texture += 0.8 * blobs / np.abs(blobs).max()
    texture -= texture.min()
    return (texture / texture.max() * 230 + 15).astype(np.float32)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    cells = grid.shape[0] - 1
    at = np.linspace(0, cells, size, endpoint=False)
    i = at.astype(int)
    f = (at - i).astype(np.float32)
    top = grid[i][:, i] * (1 - f)[None, :] + grid[i][:, i + 1] * f[None, :]
    bottom = grid[i + 1][:, i] * (1 - f)[None, :] + grid[i + 1][:, i + 1] * f[None, :]
    return top * (1 - f)[:, None] + bottom * f[:, None]


def render(
    room: Room,
    position: Sequence[float],
    target: Sequence[float],
    size: tuple[int, int] = (400, 300),
    fov_degrees: float = 70.0,
) -> np.ndarray:
    """An RGB image (uint8, height x width x 3) of the room from `position` looking at `target`."""
    width, height = size[0] * 2, size[1] * 2
    origin = np.asarray(position, np.float64)
    forward = np.asarray(target, np.float64) - origin
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    xs = (np.arange(width) - width / 2 + 0.5) / focal
    ys = (height / 2 - np.arange(height) - 0.5) / focal
    rays = forward + xs[None, :, None] * right + ys[:, None, None] * up
    rays /= np.linalg.norm(rays, axis=2, keepdims=True)
    rays = rays.reshape(-1, 3)
    half = np.asarray(room.size) / 2
    room_box = Box((-half[0], -half[1], 0.0), (half[0], half[1], room.size[2]))
    depth, face = _exit(room_box, origin, rays)
    for number, box in enumerate(room.boxes):
        hit, hit_face = _entry(box, origin, rays)
        nearer = hit < depth
        depth = np.where(nearer, hit, depth)
        face = np.where(nearer, 6 * (number + 1) + hit_face, face)
    points = origin + rays * depth[:, None]
    grey = _shade(room, points, face)
    grey = grey.reshape(height, width)
    grey = grey.reshape(size[1], 2, size[0], 2).mean(axis=(1, 3))
    tint = np.stack([grey * 1.02, grey, grey * 0.96], axis=2)
    return np.clip(tint, 0, 255).astype(np.uint8)


def _slabs(box: Box, origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / rays
        t1 = (np.asarray(box.low) - origin) * inverse
        t2 = (np.asarray(box.high) - origin) * inverse
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _exit(box: Box, origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where rays from inside the box leave it, and which face (axis * 2 + far side)."""
    _, far = _slabs(box, origin, rays)
    axis = np.argmin(far, axis=1)
    side = (rays[np.arange(len(rays)), axis] > 0).astype(int)
    return far[np.arange(len(rays)), axis], axis * 2 + side


def _entry(box: Box, origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where rays from outside first hit the box (inf for a miss), and which face."""
    near, far = _slabs(box, origin, rays)
    enter = near.max(axis=1)
    leave = far.min(axis=1)
    axis = np.argmax(near, axis=1)
    side = (rays[np.arange(len(rays)), axis] < 0).astype(int)
    hit = np.where((enter <= leave) & (enter > 1e-6), enter, np.inf)
    return hit, axis * 2 + side


def _shade(room: Room, points: np.ndarray, face: np.ndarray) -> np.ndarray:
    axis = (face % 6) // 2
    # The two coordinates along the face: the other two axes of the hit point.
    u = np.where(axis == 0, points[:, 1], points[:, 0])
    v = np.where(axis == 2, points[:, 1], points[:, 2])
    light = 0.75 + 0.25 * ((face % 6) / 5.0)  # each face direction lit a little differently
    if room.bare:
        return room.flat[face % len(room.flat)] * light
    offset = (face * 97) % ATLAS
    column = (u * TEXELS_PER_METRE + offset).astype(np.int64) % ATLAS
    row = (v * TEXELS_PER_METRE + offset * 3).astype(np.int64) % ATLAS
    return room.atlas[row, column] * light


def orbit(count: int, radius: float = 2.6, height: float = 1.5, turn: float = 360.0):
    """Cameras on a circle around the middle, each looking at it."""
    for k in range(count):
        angle = math.radians(turn * k / count)
        yield (radius * math.cos(angle), radius * math.sin(angle), height), (0.0, 0.0, 0.6)


def pan(count: int, turn: float = 150.0):
    """One spot, the camera turned step by step (a tripod's pan: no parallax)."""
    spot = (0.5, -2.0, 1.5)
    for k in range(count):
        angle = math.radians(30 + turn * k / max(count - 1, 1))
        yield spot, (spot[0] + math.cos(angle), spot[1] + math.sin(angle), 1.2)


def walk(count: int, side: int):
    """A walk along the wall at y = 4 * side, looking at it (side 1: north, -1: south)."""
    for k in range(count):
        x = -2.5 + 5.0 * k / max(count - 1, 1)
        yield (x, 2.0 * side, 1.4), (x, 4.0 * side, 0.9)


def write_set(
    room: Room,
    cameras,
    folder: Path,
    *,
    size: tuple[int, int] = (400, 300),
    first: int = 1,
) -> list[Path]:
    """Render each camera to IMG_nnnn.jpg in `folder`; the paths written."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, (position, target) in enumerate(cameras, start=first):
        path = folder / f"IMG_{number:04d}.jpg"
        Image.fromarray(render(room, position, target, size)).save(path, quality=92)
        written.append(path)
    return written


def zip_set(paths: Sequence[Path], archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for path in paths:
            out.write(path, path.name)
    return archive
