"""The frames the pose check reconstructs from, written downscaled into a working folder.

Photos are put in capture order (EXIF DateTimeOriginal, then the name: a camera's numbering
breaks ties and orders photos without a time) and spread evenly down to `limit` when there are
more. A video is sampled by time, `fps` frames per second (Teleport counts 2 per second), down
to `limit` spread over its length. Each frame is written as a JPEG no larger than `max_side`
pixels, named after its photo (or its time in the video), so reasons can name it.

Runs in the pose check's child process, after its memory limit is set.
"""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import ceil
from pathlib import Path

from PIL import Image, ImageOps

from ...inputs import IMAGE_SUFFIXES
from ..budget import MemoryBudget, TooLarge, decode_cost
from ..images import DECODE_ERRORS, READ_ERRORS, eight_bits
from ..measures import clipped_share, streak_ratio
from ..members import too_large

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 36867
DATE_TIME = 306
# Pillow cannot read these (or reads a preview only); the per-picture check says so already.
NOT_READ = (".dng", ".exr", ".heic", ".heif")
# Modes Pillow scales by picking pixels (nearest neighbour), not averaging them: turned to RGB
# before they are scaled down, or a palette PNG's fine detail turns to aliasing.
INDEXED = ("1", "P")


@dataclass(frozen=True)
class Written:
    names: list[str]  # the working files, in capture order
    shown: list[str]  # what each is called for the operator (the member, or a time)
    ordered: bool  # the order means something (capture times, or a video)
    total: int  # frames in the input (before spreading down to the limit)
    streaks: list[float]  # each frame's `measures.streak_ratio` (small: smeared by motion)
    clipped: list[float]  # each frame's share of pixels crushed black or blown white
    sides: list[int]  # each frame's longest side as written (a thumbnail has few features)


def spread(count: int, limit: int) -> list[int]:
    """`limit` indices spread evenly over `count` (all of them when there are few)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(k * (count - 1) / (limit - 1)) for k in range(limit)})


def photos(path: Path, folder: Path, *, limit: int, max_side: int, threads: int = 2) -> Written:
    with zipfile.ZipFile(path) as archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and info.filename.lower().endswith(IMAGE_SUFFIXES)
            and not info.filename.lower().endswith(NOT_READ)
        ]
        timed = [(_taken(archive, info), info.filename, info) for info in members]
        has_times = sum(1 for t, _, _ in timed if t) >= len(timed) / 2
        timed.sort(key=lambda entry: (entry[0] or "9999", entry[1]))
        chosen = [timed[index] for index in spread(len(timed), limit)]
        # Decoding a 12 MP JPEG is most of this step and Pillow lets go of the GIL while it
        # decodes: one photo per core, written in capture order whatever finishes first. The
        # per-picture check's bounds hold here too (a member too large to inflate, pixels past
        # the shared budget are not decoded; that check names them), or two large panoramas
        # decoded at once took the child past its memory limit and the whole verdict with it.
        budget = MemoryBudget()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pictures = pool.map(
                lambda entry: _downscaled(archive, entry[2], max_side, budget), chosen
            )
            names: list[str] = []
            shown: list[str] = []
            streaks: list[float] = []
            clipped: list[float] = []
            sides: list[int] = []
            for (_, member_name, _), decoded in zip(chosen, pictures, strict=True):
                if decoded is None:
                    continue  # the per-picture check names frames that do not decode
                image, (streak, clip) = decoded
                name = f"{len(names):05d}.jpg"
                image.save(folder / name, quality=90)
                names.append(name)
                shown.append(member_name)
                streaks.append(streak)
                clipped.append(clip)
                sides.append(max(image.size))
    # Photos named by a camera (IMG_0001...) are in capture order even without EXIF times.
    ordered = has_times or _numbered(shown)
    return Written(names, shown, ordered, len(members), streaks, clipped, sides)


def _downscaled(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_side: int, budget: MemoryBudget
) -> tuple[Image.Image, tuple[float, float]] | None:
    """The member decoded no larger than `max_side`, upright, in 8-bit RGB, with its marks;
    None when it cannot be read or decoded within the bounds (a corrupt member is one frame
    fewer, never the whole check's failure)."""
    if too_large(info) is not None:
        return None
    try:
        with Image.open(io.BytesIO(archive.read(info))) as picture:
            # JPEG decodes at 1/2, 1/4 or 1/8 of its size, the smallest still covering the box
            # asked for: ask for the frame's own shape, or a square box keeps 3:2 and 4:3 photos
            # at twice the pixels (4000x3000 into 1000x1000: 1/2, into 1000x750: 1/4).
            scale = max_side / max(picture.size)
            picture.draft("RGB", (ceil(picture.width * scale), ceil(picture.height * scale)))
            cost = decode_cost(picture.mode, picture.size, picture.format)
            indexed = picture.mode in INDEXED
            if indexed:
                cost += decode_cost("RGB", picture.size)
            with budget.reserve(cost, info.filename):
                if indexed:
                    picture = picture.convert("RGB")
                picture.thumbnail((max_side, max_side))  # in place: the full size goes now
                image = eight_bits(ImageOps.exif_transpose(picture)).convert("RGB")
    except (TooLarge, *READ_ERRORS, *DECODE_ERRORS):
        return None
    return image, _marks(image)


def _marks(image: Image.Image) -> tuple[float, float]:
    """What tells a smeared or a dark frame from a bare one: its streaks and its clipping."""
    grey = image.convert("L")
    return streak_ratio(grey), clipped_share(grey)


def _numbered(names: list[str]) -> bool:
    stems = [Path(n).stem.rstrip("0123456789") for n in names]
    return (
        len(names) > 1 and len(set(stems)) == 1 and all(Path(n).stem[-1:].isdigit() for n in names)
    )


def _taken(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The photo's EXIF capture time as 'YYYY:MM:DD HH:MM:SS' (sorts as text), or None."""
    try:
        with archive.open(info) as member:
            head = member.read(256 * 1024)  # EXIF sits in the first 64 KiB of a JPEG
        with Image.open(io.BytesIO(head)) as picture:
            exif = picture.getexif()
            taken = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    except (*READ_ERRORS, *DECODE_ERRORS):  # an encrypted member raised RuntimeError here
        return None
    return str(taken).strip() or None if taken else None


def video(path: Path, folder: Path, *, limit: int, max_side: int, fps: float) -> Written:
    """Frames every 1/fps seconds (the first decoded at or after each time), at most `limit`."""
    import av

    names: list[str] = []
    shown: list[str] = []
    streaks: list[float] = []
    clipped: list[float] = []
    sides: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # Frames no other frame refers to (most B-frames) are never decoded: 40 % less work on
        # a phone's H.264, and the next frame it does decode is a few hundredths of a second on.
        stream.codec_context.skip_frame = "NONREF"
        duration = _duration(container, stream)
        # Every 1/fps seconds from the start (an 18 s video at 1/s: 0 .. 17 s), spread down.
        wanted = max(2, int(duration * fps)) if duration else limit
        times = [k / fps for k in spread(wanted, limit)] if duration else []
        next_at = 0
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if times and next_at < len(times) and frame.time + 1e-6 < times[next_at]:
                continue
            scale = min(1.0, max_side / max(frame.width, frame.height))
            # Scaled by libswscale as it converts, not by Pillow after a full-size copy.
            image = frame.to_image(
                width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale))
            )
            name = f"{len(names):05d}.jpg"
            image.save(folder / name, quality=90)
            names.append(name)
            shown.append(f"{frame.time:.1f}s")
            streak, clip = _marks(image)
            streaks.append(streak)
            clipped.append(clip)
            sides.append(max(image.size))
            next_at += 1
            if next_at >= len(times) or len(names) >= limit:
                break
    return Written(names, shown, True, wanted, streaks, clipped, sides)


def _duration(container: object, stream: object) -> float:
    if getattr(stream, "duration", None) and getattr(stream, "time_base", None):
        return float(stream.duration * stream.time_base)
    container_duration = getattr(container, "duration", None)
    return container_duration / 1_000_000 if container_duration else 0.0
