"""What is measured on one decoded frame, and between neighbours: pure over decoded pictures.

Every frame is judged at one analysis size (its long side scaled to `ANALYSIS_LONG_SIDE`), so
sharpness figures of a set are comparable whatever the cameras wrote:
- sharpness: the variance of the Laplacian of the grey image (edges make it large, blur small);
  judged relative to the set's own median, since a foggy field and a brick wall differ more
  than a sharp and a blurred photo of either; and against an absolute floor
  (`SHARPNESS_FLOOR`, `FrameMeasure.smeared`), since a set blurred throughout has no sharp
  median to be compared with;
- exposure: the fractions of pixels crushed black (<= `DARK`) or blown white (>= `BRIGHT`);
- a 64-bit difference hash (dHash) of a 9x8 thumbnail: neighbours a few bits apart show the
  same view (a tripod left standing, a burst);
- streaks: how much sharper the frame's steepest edges are across one direction than along
  another (`streak_ratio`): motion smears every edge along the direction the camera moved,
  whatever the scene; the Laplacian's variance misses it when the other direction is sharp;
- motion between neighbours: phase correlation of 64x64 windowed thumbnails gives how far the
  view moved (as a fraction of the frame) and how well the two match at all (the peak).

Imports numpy and Pillow (the preflight extra): imported only once `deps` found them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from .frames import FrameMeasure

# Long side of the grey image every measure sees (4000x3000 photos: JPEG draft at 1/4 scale).
ANALYSIS_LONG_SIDE = 1000
DARK, BRIGHT = 8, 247
MOTION_SIZE = 64
# The default absolute sharpness floor (`[preflight] min_sharpness`), on `sharpness`'s scale at
# the analysis size, measured by `bench/sharpness.py` (15 real photos from scikit-image's wheel,
# the demo's and the tests' scenes): sharp, 25 (a retina: smooth, low contrast) and 64 (the
# moon) to 5300 (grass), the median 1190; the same pictures blurred throughout at this size,
# Gaussian sigma 8: 0.9-2.6, sigma 4: 1.3-4.4, sigma 2: 2.7-23. So 10 names any set smeared
# by sigma 4 or more, with 3.8x to spare at sigma 8, and sits 2.5x under the softest real photo.
SHARPNESS_FLOOR = 10.0
STREAK_PERCENTILE = 99.5
# A frame whose steepest steps are all under this many grey levels has no edge to have a
# direction: a blank, black or blown-out frame (every step 0) measured 0, "smeared".
STREAK_MIN_STEP = 3.0
# Pillow's BOX filter averages every source pixel into the thumbnail: no aliasing.
BOX = Image.Resampling.BOX


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """The size a `width`x`height` frame is judged at (never larger than it is)."""
    scale = min(1.0, ANALYSIS_LONG_SIDE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def measure(grey: Image.Image, *, index: int, name: str, size: tuple[int, int]) -> FrameMeasure:
    """The figures of one grey PIL image (mode "L", at its analysis size)."""
    pixels = np.asarray(grey, dtype=np.uint8)
    return FrameMeasure(
        index=index,
        name=name,
        width=size[0],
        height=size[1],
        sharpness=sharpness(pixels),
        dark=float(np.count_nonzero(pixels <= DARK)) / pixels.size,
        bright=float(np.count_nonzero(pixels >= BRIGHT)) / pixels.size,
        dhash=dhash(grey),
        motion=motion_thumbnail(grey),
    )


def sharpness(pixels: Any) -> float:
    """Variance of the 4-neighbour Laplacian: large for crisp edges, small for blur."""
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    a = pixels.astype(np.float32)
    lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - np.float32(4.0) * a[1:-1, 1:-1]
    return float(lap.var())


def streak_ratio(picture: Image.Image) -> float:
    """The weakest over the strongest of a frame's steepest steps along four directions
    (0, 45, 90 and 135 degrees; the top half percent of each): about 1 for a sharp or evenly
    blurred frame, small for one smeared along a line."""
    g = np.asarray(picture.convert("L"), dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 1.0
    diagonal = np.float32(math.sqrt(0.5))  # a diagonal step spans sqrt(2) pixels
    steps = (
        np.abs(g[:, 1:] - g[:, :-1]),
        np.abs(g[1:, :] - g[:-1, :]),
        np.abs(g[1:, 1:] - g[:-1, :-1]) * diagonal,
        np.abs(g[1:, :-1] - g[:-1, 1:]) * diagonal,
    )
    steepest = [_percentile(step.ravel(), STREAK_PERCENTILE) for step in steps]
    if max(steepest) < STREAK_MIN_STEP:
        return 1.0  # no edges, no streaks: the clipping or the feature count names it
    return round(min(steepest) / max(steepest), 3)


def clipped_share(grey: Image.Image) -> float:
    """The share of a grey frame's pixels crushed black or blown white."""
    histogram = grey.histogram()
    total = max(1, sum(histogram))
    return round((sum(histogram[: DARK + 1]) + sum(histogram[BRIGHT:])) / total, 3)


def _percentile(values: Any, percent: float) -> float:
    at = min(values.size - 1, int(values.size * percent / 100))
    return float(np.partition(values, at)[at])  # a partial sort: 4x cheaper than percentile


def dhash(grey: Image.Image) -> int:
    """64-bit difference hash: is each of 8x8 cells brighter than its right neighbour."""
    small = np.asarray(grey.resize((9, 8), resample=BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def motion_thumbnail(grey: Image.Image) -> Any:
    """The frame as a 64x64 zero-mean, Hann-windowed float array (for `shift`)."""
    small = grey.resize((MOTION_SIZE, MOTION_SIZE), resample=BOX)
    a = np.asarray(small, dtype=np.float32)
    a -= a.mean()
    window = np.outer(np.hanning(MOTION_SIZE), np.hanning(MOTION_SIZE)).astype(np.float32)
    return a * window


def shift(a: Any, b: Any) -> tuple[float, float]:
    """(how far the view moved, as a fraction of the frame; the match's peak, 0..1) between
    two motion thumbnails, by phase correlation."""
    cross = np.fft.rfft2(a) * np.conj(np.fft.rfft2(b))
    cross /= np.abs(cross) + 1e-9
    surface = np.fft.irfft2(cross, s=a.shape)
    peak_at = int(np.argmax(surface))
    dy, dx = divmod(peak_at, a.shape[1])
    # The surface wraps around: a peak past half way is a move the other way.
    dy = dy - a.shape[0] if dy > a.shape[0] // 2 else dy
    dx = dx - a.shape[1] if dx > a.shape[1] // 2 else dx
    moved = math.hypot(dx / a.shape[1], dy / a.shape[0])
    return moved, float(surface.flat[peak_at])
