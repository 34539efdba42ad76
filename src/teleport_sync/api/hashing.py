"""Parts' MD5s, computed beside their upload: several parts hashed at once on one core.

A part's MD5 is what S3-style storage answers as its ETag, so checking every part costs one MD5
of every byte sent: on a fast link that is most of the upload's CPU (OpenSSL's MD5 runs at
~0.7 GB/s a core, while sendfile moves the bytes for almost nothing). One MD5 stream cannot be
split, but an upload's parts are independent streams: `LaneHasher` feeds up to eight of them
through the eight 32-bit lanes of an AVX2 register (the `_md5lanes` extension), block for block
in step, on one thread; where the CPU has AVX-512VL, the same lanes with its one-instruction
rotations and round functions. With eight parts in flight (the default) that is ~2.9x
OpenSSL's speed on one core with AVX2, ~4x with AVX-512VL (docs/BENCHMARKS.md). Where the
extension is not built or the CPU has no AVX2, `ThreadHasher` hashes parts with hashlib, at
most one thread per core. Both give hashlib's digest, byte for byte.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .filebody import md5_of_region

try:  # built from _md5lanes.c when the package is installed; optional
    from . import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _md5lanes = None

LANES = 8
# Bytes read per lane per round: large enough that a round's Python work is noise beside the
# hashing, small enough that eight lanes' buffers stay a few MiB.
CHUNK = 1 << 20
_INITIAL = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)


class PartHasher(Protocol):
    """Hashes file regions; "" for a region whose `stop` was set before it was done."""

    def submit(
        self, path: Path, offset: int, length: int, stop: threading.Event | None = None
    ) -> Future[str]: ...

    def close(self) -> None: ...


def lanes_available() -> bool:
    """Is the eight-lane kernel built, and can this CPU run it?"""
    return _md5lanes is not None and bool(_md5lanes.available())


def lanes_kernel() -> str | None:
    """The lanes kernel this CPU runs ("avx512vl" or "avx2"), None without one."""
    return _md5lanes.kernel() if _md5lanes is not None else None


def part_hasher(workers: int, *, lanes: bool | None = None) -> PartHasher:
    """The fastest hasher this machine has: lanes when it can run them, else threads."""
    if lanes is None:
        lanes = lanes_available() and not os.environ.get("TELEPORT_SYNC_NO_MD5_LANES")
    return LaneHasher() if lanes else ThreadHasher(workers)


class ThreadHasher:
    """hashlib's MD5, one region per thread, at most a thread per core (the GIL is released
    while it hashes)."""

    def __init__(self, workers: int) -> None:
        # No more threads than cores: more would only slice the same CPU finer, and starve the
        # sending of it.
        threads = max(1, min(workers, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="md5")

    def submit(
        self, path: Path, offset: int, length: int, stop: threading.Event | None = None
    ) -> Future[str]:
        return self._pool.submit(md5_of_region, path, offset, length, stop=stop)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Lane:
    """One region being hashed in one lane: its file, what is left, what was read."""

    path: Path
    offset: int
    length: int
    stop: threading.Event | None
    future: Future[str]
    handle: BinaryIO | None = None
    left: int = 0  # bytes of the region not read yet
    buffer: bytearray = field(default_factory=bytearray)  # CHUNK bytes once seated in a lane
    filled: int = 0  # bytes of `buffer` that hold data
    used: int = 0  # of those, bytes already hashed

    def available(self) -> int:
        return self.filled - self.used


class LaneHasher:
    """Up to eight regions hashed in step by one thread with the lanes kernel.

    `kernel="avx2"` keeps to the AVX2 kernel where a faster one exists (tests compare both)."""

    def __init__(self, kernel: str | None = None) -> None:
        if not lanes_available():
            raise RuntimeError("the MD5 lanes kernel is not available here")
        self._kernel: Any = _md5lanes
        self._kernel_name = kernel
        self._state = bytearray(4 * 4 * LANES)  # a0..a7 b0..b7 c0..c7 d0..d7 (uint32)
        self._words = memoryview(self._state).cast("I")
        self._lanes: list[_Lane | None] = [None] * LANES
        self._waiting: deque[_Lane] = deque()
        self._idle = bytes(CHUNK)  # what a lane without a region reads
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="md5-lanes", daemon=True)
        self._thread.start()

    def submit(
        self, path: Path, offset: int, length: int, stop: threading.Event | None = None
    ) -> Future[str]:
        future: Future[str] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the hasher is closed")
            self._waiting.append(_Lane(path, offset, length, stop, future, left=length))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the hashing thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not any(self._lanes):
                    self._cond.wait()
                if self._closed:
                    self._cancel_all()
                    return
                self._seat_waiting()
            self._round()

    def _seat_waiting(self) -> None:
        for index, lane in enumerate(self._lanes):
            if lane is None and self._waiting:
                self._start(index, self._waiting.popleft())

    def _start(self, index: int, lane: _Lane) -> None:
        for word, value in enumerate(_INITIAL):
            self._words[word * LANES + index] = value
        try:
            # The buffer only now: regions asked for ahead wait in the queue without one.
            lane.buffer = bytearray(CHUNK)
            lane.handle = lane.path.open("rb", buffering=0)
            lane.handle.seek(lane.offset)
        except OSError as exc:
            lane.future.set_exception(exc)
            return
        self._lanes[index] = lane

    def _round(self) -> None:
        """Top up every lane, hash the blocks all of them have, finish what has ended."""
        for index, lane in enumerate(self._lanes):
            if lane is None:
                continue
            if lane.stop is not None and lane.stop.is_set():
                self._finish(index, "")
            elif lane.available() < 64 and lane.left and not self._read(index, lane):
                continue
            elif lane.available() < 64 and not lane.left:
                self._finish(index, self._digest(index, lane))
        active = [lane for lane in self._lanes if lane is not None]
        if not active:
            return
        blocks = min(lane.available() // 64 for lane in active)
        if blocks:
            buffers = [
                memoryview(lane.buffer)[lane.used : lane.used + blocks * 64]
                if lane is not None
                else self._idle
                for lane in self._lanes
            ]
            self._kernel.blocks(self._state, buffers, blocks, self._kernel_name)
            for lane in active:
                lane.used += blocks * 64

    def _read(self, index: int, lane: _Lane) -> bool:
        """The lane's next bytes after what is left of its buffer; False if it failed."""
        assert lane.handle is not None
        rest = lane.available()
        lane.buffer[:rest] = lane.buffer[lane.used : lane.filled]
        want = min(CHUNK - rest, lane.left)
        try:
            got = lane.handle.readinto(memoryview(lane.buffer)[rest : rest + want])
        except OSError as exc:
            self._fail(index, exc)
            return False
        if not got:
            self._fail(index, OSError(f"{lane.path} ended {lane.left} bytes early (truncated?)"))
            return False
        lane.used, lane.filled, lane.left = 0, rest + got, lane.left - got
        return True

    def _digest(self, index: int, lane: _Lane) -> str:
        """The region's MD5: its last bytes and the padding, hashed in this lane alone (the
        other lanes hash zeros meanwhile, and get their states back)."""
        tail = bytes(lane.buffer[lane.used : lane.filled])
        padded = tail + b"\x80" + bytes((55 - len(tail)) % 64) + struct.pack("<Q", lane.length * 8)
        others = bytes(self._state)
        buffers = [padded if i == index else bytes(len(padded)) for i in range(LANES)]
        self._kernel.blocks(self._state, buffers, len(padded) // 64, self._kernel_name)
        digest = struct.pack("<4I", *(self._words[w * LANES + index] for w in range(4))).hex()
        self._state[:] = others
        return digest

    def _finish(self, index: int, digest: str) -> None:
        lane = self._lanes[index]
        assert lane is not None
        self._lanes[index] = None
        if lane.handle is not None:
            lane.handle.close()
        lane.future.set_result(digest)

    def _fail(self, index: int, exc: BaseException) -> None:
        lane = self._lanes[index]
        assert lane is not None
        self._lanes[index] = None
        if lane.handle is not None:
            lane.handle.close()
        lane.future.set_exception(exc)

    def _cancel_all(self) -> None:
        for index, lane in enumerate(self._lanes):
            if lane is not None:
                self._finish(index, "")
        while self._waiting:
            self._waiting.popleft().future.set_result("")
