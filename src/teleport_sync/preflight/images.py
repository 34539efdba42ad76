"""A zip's photos, decoded one after the other at reduced size and measured (Pillow).

JPEGs are decoded in draft mode: libjpeg scales the picture down while decoding (1/2, 1/4 or
1/8), so a 12 MP photo costs the entropy decoding and a 1000-pixel image, not 36 MB of pixels.
EXIF orientation is applied (a portrait photo is judged upright). Members are read in name
order (a camera's numbering is its capture order, which neighbour measures need), sequentially
from the archive, and decoded on `threads` threads (Pillow's decoders release the GIL); at most
two members per thread are in memory at once.

A member that cannot be decoded becomes a frame with its `error` naming it; HEIC without
pillow-heif, and raw formats pre-flight does not decode, are `skipped`, never an error.
"""

from __future__ import annotations

import io
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

from ..inputs import IMAGE_SUFFIXES
from .frames import FrameMeasure
from .measures import BOX, analysis_size, measure

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
HEIF_SUFFIXES = (".heic", ".heif")
# Pillow reads a DNG's small preview, not the photo; EXR it does not read at all.
NOT_DECODED = {".dng": "a raw DNG", ".exr": "an OpenEXR image"}
# A member this large is not read into memory to be judged (and says so).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
THUMBNAIL_SIZE = (160, 120)


def image_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The images pre-flight judges (those `inputs.frames` counts), in name order."""
    found = [
        info
        for info in archive.infolist()
        if not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(found, key=lambda info: info.filename)


def zip_frames(path: Path, *, heif: bool, threads: int = 2) -> Iterator[FrameMeasure]:
    """Each image of the zip at `path`, measured, in name order. Raises zipfile.BadZipFile
    or OSError when the archive itself cannot be read."""
    with zipfile.ZipFile(path) as archive, ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[FrameMeasure]] = deque()
        for index, info in enumerate(image_members(archive)):
            skipped = _not_judged(info, heif)
            if skipped is not None:
                pending.append(_done(FrameMeasure(index, info.filename, skipped=skipped)))
            else:
                try:
                    data = archive.read(info)
                except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
                    failed = FrameMeasure(index, info.filename, error=f"cannot be read ({exc})")
                    pending.append(_done(failed))
                else:
                    pending.append(pool.submit(judge_image, data, index, info.filename))
            while len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _done(value: FrameMeasure) -> Future[FrameMeasure]:
    future: Future[FrameMeasure] = Future()
    future.set_result(value)
    return future


def _not_judged(info: zipfile.ZipInfo, heif: bool) -> str | None:
    suffix = Path(info.filename).suffix.lower()
    if suffix in HEIF_SUFFIXES and not heif:
        return "HEIC/HEIF photos need pillow-heif (pip install pillow-heif)"
    if suffix in NOT_DECODED:
        return f"{NOT_DECODED[suffix]}, which pre-flight does not decode"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"{info.file_size} bytes, too large to judge in memory"
    return None


def judge_image(data: bytes, index: int, name: str) -> FrameMeasure:
    """One encoded image, decoded small and measured; its error instead when it cannot be."""
    try:
        grey, size = decode_grey(data)
    except DECODE_ERRORS as exc:
        return FrameMeasure(index, name, error=f"cannot be decoded ({exc or type(exc).__name__})")
    return measure(grey, index=index, name=name, size=size)


def decode_grey(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """(the grey image at its analysis size, upright; the size the file stores)."""
    with Image.open(io.BytesIO(data)) as image:
        stored = image.size
        # Draft mode: libjpeg decodes straight to the smallest scale at least this large.
        image.draft("L", analysis_size(*stored))
        upright = ImageOps.exif_transpose(image)
        grey = upright.convert("L")
    wanted = analysis_size(*grey.size)
    if grey.size != wanted:
        grey = grey.resize(wanted, resample=BOX)
    return grey, stored


def thumbnail(path: Path, name: str) -> bytes | None:
    """A small colour JPEG of member `name` (for the console's strip), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(name)
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2))
            small = ImageOps.exif_transpose(image).convert("RGB")
        small.thumbnail(THUMBNAIL_SIZE, resample=BOX)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=75)
        return out.getvalue()
    except (KeyError, zipfile.BadZipFile, *DECODE_ERRORS):
        return None  # an unreadable member has no picture to show; its reason says why
