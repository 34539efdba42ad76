"""Which of a zip's images pre-flight examines, within its bounds on work and inflated bytes.

A zip is a set of promises: each member declares how large it inflates, and Python's zipfile
never inflates a member past what it declared. So every bound here is checked on the central
directory alone, before one byte is inflated:
- a member that would inflate past `MAX_MEMBER_BYTES` is not read (a zip bomb of zeros named
  `.jpg` is refused in milliseconds, by name);
- an archive whose end record declares more than `MAX_ENTRIES` entries is not opened at all;
- at most `MAX_EXAMINED` images, and at most `MAX_ARCHIVE_BYTES` inflated in all, are examined
  from one archive. A larger set is sampled: runs of `RUN` neighbours spread evenly over it (the
  neighbour rules need neighbours), and the result says so.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

from ..inputs import IMAGE_SUFFIXES
from .budget import MIB

MAX_MEMBER_BYTES = 128 * MIB  # a 100 MP JPEG is ~50 MB; an uncompressed 40 MP TIFF ~120 MB
MAX_ARCHIVE_BYTES = 4096 * MIB  # ~1000 photos of 12 MP
MAX_EXAMINED = 1000
# Entries in one archive's directory: Python's zipfile holds each as an object (~0.5 KB), so a
# directory of millions would be hundreds of MiB before one photo is read. Real sets have
# thousands.
MAX_ENTRIES = 200_000
RUN = 10


@dataclass(frozen=True)
class Member:
    index: int  # its place among the archive's images, in name order
    info: zipfile.ZipInfo
    follows: bool  # the member examined before it is its neighbour in the archive
    refused: str | None = None  # why it is not inflated at all


@dataclass(frozen=True)
class Selection:
    members: list[Member]
    images: int  # in the archive
    sampling: str | None  # how the examined ones were chosen, when not all are


def image_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The images pre-flight judges (those `inputs.frames` counts), in name order."""
    found = [
        info
        for info in archive.infolist()
        if not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(found, key=lambda info: info.filename)


def too_large(info: zipfile.ZipInfo, limit: int = MAX_MEMBER_BYTES) -> str | None:
    if info.file_size <= limit:
        return None
    return (
        f"inflates to {info.file_size // MIB} MiB, over the {limit // MIB} MiB pre-flight "
        "inflates from one photo (not a photo, or a zip bomb)"
    )


def select(
    images: list[zipfile.ZipInfo],
    *,
    max_examined: int = MAX_EXAMINED,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_member: int = MAX_MEMBER_BYTES,
    run: int = RUN,
) -> Selection:
    """The members to examine, in order: all of them when within the bounds, else runs."""
    refusals = [too_large(info, max_member) for info in images]

    def inflated(indexes: list[int]) -> int:
        return sum(images[i].file_size for i in indexes if refusals[i] is None)

    runs = -(-len(images) // run)
    wanted = min(runs, max(1, max_examined // run))
    chosen = list(range(len(images))) if wanted == runs else _runs(len(images), wanted, run)
    while wanted > 1 and inflated(chosen) > max_bytes:
        wanted = max(1, min(wanted - 1, wanted * max_bytes // inflated(chosen)))
        chosen = _runs(len(images), wanted, run)
    members = [
        Member(i, images[i], follows=k > 0 and chosen[k - 1] == i - 1, refused=refusals[i])
        for k, i in enumerate(chosen)
    ]
    sampling = None
    if len(chosen) < len(images):
        sampling = (
            f"{len(chosen)} of {len(images)} images examined, in {wanted} runs of "
            f"neighbours spread evenly (pre-flight examines at most {max_examined} images and "
            f"inflates at most {max_bytes // MIB} MiB from one archive)"
        )
    return Selection(members, len(images), sampling)


def _runs(total: int, count: int, run: int) -> list[int]:
    """`count` runs of `run` consecutive indexes out of `total`, spread evenly, first and last
    included."""
    run = min(run, total)
    if count <= 1:
        start = (total - run) // 2
        return list(range(start, start + run))
    span = total - run
    starts = [round(k * span / (count - 1)) for k in range(count)]
    return [start + j for start in starts for j in range(run)]
