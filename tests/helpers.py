"""Makers of real input files and small helpers shared by the tests."""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teleport_sync.inputs.samples import box, video_moov

MIB = 1024 * 1024


def make_zip(path: Path, *, images: int = 3, image_bytes: int = 1024, pad: int = 0) -> Path:
    """A real zip of JPEG-named images (stored, so its size is predictable), plus padding."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(images):
            archive.writestr(f"photos/{i:04d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(image_bytes))
        if pad:
            archive.writestr("extra/padding.bin", os.urandom(pad))
    return path


def make_mp4(path: Path, size: int, *, handler: bytes | None = b"vide") -> Path:
    """An MP4 of `size` bytes: ftyp, an mdat of filler, and a moov (last, as cameras write it)
    with one track of `handler` (b"vide" video, b"soun" audio-only; None: no track at all)."""
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    filler = size - len(ftyp) - len(_moov(handler, 0, 0))
    if filler < 8:
        raise ValueError(f"{size} bytes cannot hold this MP4's boxes; use handler=None or more")
    moov = _moov(handler, len(ftyp) + 8, filler - 8)
    mdat = max(8, filler).to_bytes(4, "big") + b"mdat" + os.urandom(filler - 8)
    path.write_bytes(ftyp + mdat + moov)
    return path


def _moov(handler: bytes | None, data_offset: int, data_size: int) -> bytes:
    if handler is None:
        return box(b"moov", b"")
    return video_moov(data_offset=data_offset, data_size=data_size, handler=handler)


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
