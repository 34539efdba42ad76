"""A byte range of a file as an HTTP request body, and its MD5.

`FileRegion` is what a part PUT sends. Transports that can hand the range to the kernel
(`os.sendfile` on plain-http sockets, see `transport.PlainHTTPTransport`) never copy it into
Python; every other transport iterates it in `block_size` blocks. Either way memory stays flat
whatever the part size, and progress is reported as bytes go out.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

BLOCK_SIZE = 1 << 20
# Bytes per sendfile call: small enough for smooth progress bars, large enough that the
# per-call cost (a poll and a syscall) is noise.
SENDFILE_CHUNK = 8 << 20
# Bytes per sendfile call while a bandwidth limit paces the sending: small enough that the
# socket buffer cannot hide a burst from the limiter.
THROTTLED_CHUNK = 256 << 10


class FileEndedEarly(OSError):
    """The file is shorter than the region: it was truncated while we read it."""


class FileRegion(httpx.SyncByteStream):
    """`length` bytes of `path` from `offset`, read when sent (never held in memory)."""

    def __init__(
        self,
        path: Path,
        offset: int,
        length: int,
        *,
        block_size: int = BLOCK_SIZE,
        on_progress: Callable[[int], None] | None = None,
        throttle: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        # Called with a byte count before those bytes go out; it sleeps to keep a rate.
        self.throttle = throttle
        self.offset = offset
        self.length = length
        self.block_size = block_size
        self.on_progress = on_progress or (lambda nbytes: None)
        self.sent = 0  # bytes handed to the transport so far (for progress roll-back)

    def _advance(self, nbytes: int) -> None:
        self.sent += nbytes
        self.on_progress(nbytes)

    def _missing(self, remaining: int) -> FileEndedEarly:
        return FileEndedEarly(f"{self.path} ended {remaining} bytes early (truncated?)")

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            remaining = self.length
            while remaining > 0:
                block = handle.read(min(self.block_size, remaining))
                if not block:
                    raise self._missing(remaining)
                if self.throttle is not None:
                    self.throttle(len(block))
                remaining -= len(block)
                self._advance(len(block))
                yield block

    def open(self) -> BinaryIO:
        """The file, opened for `send_to`: a vanished file fails here, before any network."""
        return self.path.open("rb")

    def send_to(self, sock: socket.socket, handle: BinaryIO) -> None:
        """Write the region from `handle` to `sock` by sendfile: pages move inside the kernel.

        Socket errors propagate as OSError; a file shorter than the region raises
        `FileEndedEarly`.
        """
        position, remaining = self.offset, self.length
        chunk = SENDFILE_CHUNK if self.throttle is None else THROTTLED_CHUNK
        while remaining > 0:
            if self.throttle is not None:
                self.throttle(min(chunk, remaining))
            sent = sock.sendfile(handle, position, min(chunk, remaining))
            if sent == 0:
                raise self._missing(remaining)
            position += sent
            remaining -= sent
            self._advance(sent)


def md5_of_region(
    path: Path,
    offset: int,
    length: int,
    *,
    block_size: int = BLOCK_SIZE,
    stop: threading.Event | None = None,
) -> str:
    """Hex MD5 of a file range, read as `FileRegion` reads it; "" if `stop` is set meanwhile.

    hashlib releases the GIL on large updates, so this runs beside the part's upload on another
    core instead of in its way.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for block in FileRegion(path, offset, length, block_size=block_size):
        if stop is not None and stop.is_set():
            return ""
        digest.update(block)
    return digest.hexdigest()
