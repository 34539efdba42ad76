"""A download's body, read within bounds: never past what was promised, never a full disk.

A model's metadata gives its size; a server (or a CDN, or a proxy between) that sends more is
misbehaving, and its extra bytes are refused at once, not written until the disk is full and
then compared. Without a size (previews, an old metadata shape) a configured cap stands in.
Free space is checked before the body is read and every so often while it is written, keeping
a reserve for the journal and everything else on that disk.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from .errors import ApiError

MIB = 1 << 20


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@dataclass(frozen=True)
class DownloadBounds:
    """How much one download may bring, and how much of its disk it must leave free.

    `slack_bytes`: what a body may exceed the metadata's size by before it is refused (a
    size rounded by the server); `cap_bytes`: the most a body without a promised size may bring
    (`[results] max_download_mib`); `reserve_bytes`: free space always left on the results disk
    (`[results] min_free_mib`); `check_every_bytes`: how often free space is asked while writing.
    `free_space` is injected (statvfs by default) so a test can play a disk that fills up.
    """

    cap_bytes: int = 8192 * MIB
    slack_bytes: int = 64 * 1024
    reserve_bytes: int = 256 * MIB
    check_every_bytes: int = 64 * MIB
    free_space: Callable[[Path], int] = field(default=_free_bytes, compare=False)

    def room(self, expected_size: int | None, start: int) -> int:
        """How many body bytes may follow `start` bytes already in the file."""
        if expected_size is None:
            return max(0, self.cap_bytes - start)
        return max(0, expected_size + self.slack_bytes - start)


class BodyTooLong(ApiError):
    """The server sent (or announced) more than it promised. Not transient: the same server
    would send the same again at once; the caller's own backoff tries later."""


class NotEnoughSpace(OSError):
    """The results disk has no room for this download while keeping its reserve."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "the server"


def _promise(bounds: DownloadBounds, expected_size: int | None) -> str:
    if expected_size is None:
        return f"the {bounds.cap_bytes} bytes [results] max_download_mib allows without a size"
    return f"the {expected_size} bytes its metadata promised"


def refuse_announced(
    bounds: DownloadBounds, url: str, expected_size: int | None, start: int, announced: int | None
) -> None:
    """Refuse before reading when the answer's Content-Length is already more than allowed."""
    if announced is not None and announced > bounds.room(expected_size, start):
        raise BodyTooLong(
            f"{host_of(url)} announced {start + announced} bytes for {urlsplit(url).path}, "
            f"more than {_promise(bounds, expected_size)}; not downloaded (a server, CDN or "
            "proxy that misbehaves; tried again later)"
        )


def ensure_space(bounds: DownloadBounds, folder: Path, url: str, needed: int) -> None:
    """Raise NotEnoughSpace unless `folder`'s disk has `needed` bytes free beyond the reserve."""
    free = bounds.free_space(folder)
    if free >= needed + bounds.reserve_bytes:
        return
    raise NotEnoughSpace(
        f"not enough free space in {folder} for the model from {host_of(url)}: "
        f"{needed} bytes to write, {free} free, {bounds.reserve_bytes} kept free "
        "([results] min_free_mib); free some space or point [results] dir at a larger disk "
        "(the download is tried again later)"
    )


def write_bounded(
    blocks: Iterable[bytes],
    out: BinaryIO,
    *,
    bounds: DownloadBounds,
    url: str,
    expected_size: int | None,
    start: int,
    folder: Path,
) -> int:
    """Write `blocks` to `out` (positioned at `start`) until they end; returns the bytes
    written. Raises BodyTooLong at the first byte past the bounds (never reading on), and
    NotEnoughSpace when the disk's free space falls to its reserve meanwhile."""
    room = bounds.room(expected_size, start)
    written = since_check = 0
    for block in blocks:
        if written + len(block) > room:
            raise BodyTooLong(
                f"{host_of(url)} sent more than {_promise(bounds, expected_size)} for "
                f"{urlsplit(url).path}; stopped reading at {start + room} bytes (a server, CDN "
                "or proxy that misbehaves; tried again later)"
            )
        since_check += len(block)
        if since_check >= bounds.check_every_bytes:
            since_check = 0
            ensure_space(bounds, folder, url, len(block))
        out.write(block)
        written += len(block)
    return written
