"""How much memory pre-flight may spend on pixels at once, shared by its decoding threads.

A picture's cost is known from its header before a pixel is decoded (`decode_cost`: the size
Pillow will decode it at, times the bytes a pixel takes in its mode, plus the grey copy that is
measured). A decode waits until its cost fits beside the others in flight; one that could never
fit is refused before decoding (`TooLarge`), so no picture, however its header lies or however
large a panorama is, takes the process past the budget. JPEGs cost little: they are decoded in
draft mode, already scaled down by libjpeg.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1 << 20
# Pixels in memory at once, across threads. With the interpreter, numpy, PyAV and Pillow
# (about 100 MiB) it keeps `check` and the daemon's pre-flight under 512 MiB of RSS
# (docs/BENCHMARKS.md); a 50 MP RGB PNG or TIFF (250 MiB) still fits.
DECODE_BUDGET_BYTES = 256 * MIB
# Bytes per pixel as Pillow stores each mode in memory (multi-band modes take 4).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


class TooLarge(Exception):
    """The picture would need more memory than the whole budget; the message says how much."""


# Formats whose library decodes into buffers of its own that Pillow then copies: bytes per
# pixel beyond Pillow's image (libwebp's animation decoder keeps two RGBA canvases and hands
# a copy over: a 25 MP WebP grew RSS by 384 MiB, 15 bytes a pixel; a PNG by 120 MiB, 5).
_OWN_BUFFERS = {"WEBP": 10, "HEIF": 4, "AVIF": 4}


def decode_cost(mode: str, size: tuple[int, int], image_format: str | None = None) -> int:
    """Bytes to decode a picture of `mode` at `size` and keep its grey copy beside it."""
    pixels = size[0] * size[1]
    own = _OWN_BUFFERS.get(image_format or "", 0)
    return pixels * (_BYTES_PER_PIXEL.get(mode, 4) + 1 + own)


class MemoryBudget:
    """Bytes reserved by the decodes in flight, never over `limit`."""

    def __init__(self, limit: int = DECODE_BUDGET_BYTES) -> None:
        self.limit = limit
        self._used = 0
        self._freed = threading.Condition()

    @contextmanager
    def reserve(self, cost: int, what: str) -> Iterator[None]:
        """Hold `cost` bytes while the block runs (waiting for them if others hold them).
        Raises TooLarge at once when `cost` is over the whole budget."""
        if cost > self.limit:
            raise TooLarge(
                f"{what} would take {_mib(cost)} MiB to decode, over pre-flight's "
                f"{_mib(self.limit)} MiB for pictures"
            )
        with self._freed:
            self._freed.wait_for(lambda: self._used + cost <= self.limit)
            self._used += cost
        try:
            yield
        finally:
            with self._freed:
                self._used -= cost
                self._freed.notify_all()

    @property
    def used(self) -> int:
        with self._freed:
            return self._used


def _mib(count: int) -> int:
    return -(-count // MIB)  # rounded up: 1 byte over is "1 MiB", never "0 MiB"
