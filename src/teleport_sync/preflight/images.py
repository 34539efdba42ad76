"""A zip's photos, decoded one after the other at reduced size and measured (Pillow).

Bounded in memory and work, whatever the archive holds (see `budget` and `members`):
- members are streamed from the archive into the decoder, never read whole into memory, and a
  member that declares more than pre-flight inflates from one photo is refused unread;
- JPEGs are decoded in draft mode: libjpeg scales the picture down while decoding (1/2, 1/4 or
  1/8), so a 12 MP photo costs the entropy decoding and a 1000-pixel image, not 36 MB of pixels;
- formats without a draft mode (PNG, TIFF, WebP, ...) are decoded whole, so their cost is
  reckoned from the header first: a decode waits for room in the shared `MemoryBudget`, and a
  picture larger than the whole budget is not decoded (a frame `error` naming its size);
- a very large set is sampled (`members.select`) and the result says so.
EXIF orientation is applied (a portrait photo is judged upright). Members are read in name
order (a camera's numbering is its capture order, which neighbour measures need) and decoded on
`threads` threads (Pillow's decoders release the GIL).

A member that cannot be decoded becomes a frame with its `error` naming it; HEIC without
pillow-heif, and raw formats pre-flight does not decode, are `skipped`, never an error.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from .budget import MemoryBudget, TooLarge, decode_cost
from .frames import FrameMeasure
from .measures import BOX, analysis_size, measure
from .members import Member, Selection, image_members, select, too_large

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
# What reading a member from the archive raises: a bad CRC, a broken deflate stream, an
# encrypted or unsupported method.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
HEIF_SUFFIXES = (".heic", ".heif")
# Pillow reads a DNG's small preview, not the photo; EXR it does not read at all.
NOT_DECODED = {".dng": "a raw DNG", ".exr": "an OpenEXR image"}
THUMBNAIL_SIZE = (160, 120)
# Modes of 16-bit pictures (a 16-bit grey PNG opens as I;16): Pillow's own conversion to L or
# RGB clips every level over 255 to white, so a well-exposed one was judged blown out.
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

__all__ = ["Selection", "decode_grey", "eight_bits", "image_members", "thumbnails", "zip_frames"]


def zip_frames(
    path: Path,
    *,
    heif: bool,
    threads: int = 2,
    budget: MemoryBudget | None = None,
    selected: list[Selection] | None = None,
) -> Iterator[FrameMeasure]:
    """Each examined image of the zip at `path`, measured, in name order (the selection made
    is appended to `selected`, for its `sampling`). Raises zipfile.BadZipFile or OSError when
    the archive itself cannot be read."""
    budget = budget or MemoryBudget()
    with zipfile.ZipFile(path) as archive, ThreadPoolExecutor(threads) as pool:
        selection = select(image_members(archive))
        if selected is not None:
            selected.append(selection)
        pending: deque[Future[FrameMeasure]] = deque()
        for member in selection.members:
            pending.append(_examine(archive, member, heif, pool, budget))
            while len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _examine(
    archive: zipfile.ZipFile,
    member: Member,
    heif: bool,
    pool: ThreadPoolExecutor,
    budget: MemoryBudget,
) -> Future[FrameMeasure]:
    name, index = member.info.filename, member.index
    skipped = _not_judged(member.info, heif)
    if skipped is not None:
        return _done(FrameMeasure(index, name, skipped=skipped, follows=member.follows))
    if member.refused is not None:
        return _done(FrameMeasure(index, name, error=member.refused, follows=member.follows))
    try:
        stream = archive.open(member.info)
    except (OSError, *READ_ERRORS) as exc:
        failed = FrameMeasure(index, name, error=f"cannot be read ({exc})", follows=member.follows)
        return _done(failed)
    return pool.submit(_judge_member, stream, member, budget)


class Metered:
    """A member's stream that a decoder may not seek back and forth through for ever: zipfile
    goes back by inflating again from the start and forward by reading through, so a picture
    whose offsets jump to and fro (a TIFF's tags can) would cost its size at every jump. At most
    `PASSES` times the member's size is inflated; past that reading fails, naming why."""

    PASSES = 4

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream = stream
        self._size = size
        self._left = self.PASSES * max(size, 1 << 20)

    def _spend(self, count: int) -> None:
        self._left -= count
        if self._left < 0:
            raise OSError(
                f"the decoder went back and forth through it past {self.PASSES} times its size"
            )

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._spend(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        here = self._stream.tell()
        there = (offset, here + offset, self._size + offset)[whence]
        self._spend(there if there < here else there - here)  # what the move inflates
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def _judge_member(stream: IO[bytes], member: Member, budget: MemoryBudget) -> FrameMeasure:
    name = member.info.filename
    try:
        with stream:
            metered = Metered(stream, member.info.file_size)
            judged = judge_image(metered, member.index, name, budget)  # type: ignore[arg-type]
    except READ_ERRORS as exc:  # the member's bytes, inflated as the decoder reads them
        judged = FrameMeasure(member.index, name, error=f"cannot be read ({exc})")
    return judged if member.follows else replace(judged, follows=False)


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
    return None


def judge_image(
    data: bytes | IO[bytes], index: int, name: str, budget: MemoryBudget | None = None
) -> FrameMeasure:
    """One encoded image, decoded small and measured; its error instead when it cannot be."""
    try:
        grey, size = decode_grey(data, budget)
    except TooLarge as exc:
        return FrameMeasure(index, name, error=f"not decoded: {exc}")
    except UnidentifiedImageError:
        return FrameMeasure(index, name, error="cannot be decoded (not an image Pillow reads)")
    except DECODE_ERRORS as exc:
        return FrameMeasure(index, name, error=f"cannot be decoded ({exc or type(exc).__name__})")
    return measure(grey, index=index, name=name, size=size)


def decode_grey(
    data: bytes | IO[bytes], budget: MemoryBudget | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """(the grey image at its analysis size, upright; the size the file stores). Raises
    TooLarge, before decoding, when the picture would not fit in `budget`."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        stored = image.size
        # Draft mode: libjpeg decodes straight to the smallest scale at least this large.
        image.draft("L", analysis_size(*stored))
        cost = decode_cost(image.mode, image.size, image.format)
        what = f"a {stored[0]}x{stored[1]} {image.format or 'picture'}"
        with (budget or MemoryBudget()).reserve(cost, what):
            # Grey and small first, turned upright after: no full-size copy for the turn.
            if image.mode in SIXTEEN_BIT:  # small first: the levels are rescaled at 4 B/pixel
                grey = eight_bits(image.resize(analysis_size(*image.size), resample=BOX))
            else:
                grey = image.convert("L")
            turn = _UPRIGHT.get(image.getexif().get(ORIENTATION, 1))
            image.close()  # the decoded picture goes now, before the grey one is scaled
            wanted = analysis_size(*grey.size)
            if grey.size != wanted:
                grey = grey.resize(wanted, resample=BOX)
    return (grey.transpose(turn) if turn is not None else grey), stored


def eight_bits(image: Image.Image) -> Image.Image:
    """`image` as 8-bit levels (grey "L" for a 16-bit picture, scaled, not clipped; any other
    mode as it is)."""
    if image.mode not in SIXTEEN_BIT:
        return image
    return image.convert("I").point(lambda level: level / 256).convert("L")


def thumbnails(path: Path, names: list[str], budget: MemoryBudget | None = None) -> list[bytes]:
    """Small colour JPEGs of members `names` (for the console's strip), each b"" when it has
    no picture to show (unreadable, or over the bounds: its reason says why)."""
    budget = budget or MemoryBudget()
    try:
        with zipfile.ZipFile(path) as archive:
            return [_thumbnail(archive, name, budget) for name in names]
    except (zipfile.BadZipFile, OSError):
        return [b"" for _ in names]


def _thumbnail(archive: zipfile.ZipFile, name: str, budget: MemoryBudget) -> bytes:
    try:
        info = archive.getinfo(name)
        if too_large(info) is not None:
            return b""
        with archive.open(info) as stream, Image.open(stream) as image:
            image.draft("RGB", (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2))
            with budget.reserve(decode_cost(image.mode, image.size, image.format) * 2, name):
                small = eight_bits(ImageOps.exif_transpose(image)).convert("RGB")
        small.thumbnail(THUMBNAIL_SIZE, resample=BOX)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=75)
        return out.getvalue()
    except (KeyError, TooLarge, *READ_ERRORS, *DECODE_ERRORS):
        return b""  # an unreadable member has no picture to show; its reason says why
