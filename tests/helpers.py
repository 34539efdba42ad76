"""Makers of real input files and small helpers shared by the tests."""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def make_zip(path: Path, *, images: int = 3, image_bytes: int = 1024, pad: int = 0) -> Path:
    """A real zip of JPEG-named images (stored, so its size is predictable), plus padding."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(images):
            archive.writestr(f"photos/{i:04d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(image_bytes))
        if pad:
            archive.writestr("extra/padding.bin", os.urandom(pad))
    return path


def make_mp4(path: Path, size: int) -> Path:
    """An MP4-shaped file: ftyp, a free box of filler, and moov; top-level boxes reach EOF."""
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    moov = b"\x00\x00\x00\x08moov"
    filler = max(8, size - len(ftyp) - len(moov))
    free = filler.to_bytes(4, "big") + b"free" + os.urandom(filler - 8)
    path.write_bytes(ftyp + free + moov)
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll `condition` until it holds; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def set_knobs(emulator: Any, **knobs: object) -> None:
    """Change emulator knobs while it runs; a misspelt knob fails loudly."""
    for name, value in knobs.items():
        if not hasattr(emulator.config, name):
            raise AttributeError(f"the emulator has no knob {name!r}")
        setattr(emulator.config, name, value)
