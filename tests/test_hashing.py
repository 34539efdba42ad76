"""Parts' MD5s: the eight-lane kernel gives hashlib's digest for every length class, in every
lane, for regions that start and end anywhere, while other regions come and go beside it."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from teleport_sync.api.hashing import (
    CHUNK,
    LaneHasher,
    ThreadHasher,
    lanes_available,
    lanes_kernel,
    part_hasher,
)

needs_lanes = pytest.mark.skipif(not lanes_available(), reason="no AVX2, or the kernel not built")
# Every kernel this CPU can run: the best one (None), and AVX2 where the best is AVX-512VL.
KERNELS = [None, "avx2"] if lanes_kernel() == "avx512vl" else [None]


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, bytes]:
    body = random.Random(7).randbytes(3 * CHUNK + 12345)
    path = tmp_path / "data.bin"
    path.write_bytes(body)
    return path, body


def regions(size: int) -> list[tuple[int, int]]:
    """Lengths around every boundary the kernel and its driver have: blocks, padding, reads."""
    lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, CHUNK - 1, CHUNK, CHUNK + 1]
    rng = random.Random(3)
    found = [(rng.randrange(0, 1000), n) for n in lengths]
    found += [(rng.randrange(0, size // 2), rng.randrange(0, size // 2)) for _ in range(20)]
    return [(o, n) for o, n in found if o + n <= size]


@needs_lanes
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k or "best")
def test_the_lanes_give_hashlibs_digest_for_every_length(
    data: tuple[Path, bytes], kernel: str | None
) -> None:
    path, body = data
    hasher = LaneHasher(kernel)
    try:
        wanted = regions(len(body))
        futures = [hasher.submit(path, o, n) for o, n in wanted]  # more than 8: they queue
        got = [f.result(timeout=60) for f in futures]
    finally:
        hasher.close()
    assert got == [hashlib.md5(body[o : o + n]).hexdigest() for o, n in wanted]


@needs_lanes
def test_regions_submitted_from_many_threads_while_others_run(data: tuple[Path, bytes]) -> None:
    path, body = data
    hasher = LaneHasher()
    results: dict[tuple[int, int], str] = {}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(5):
            o, n = rng.randrange(0, CHUNK), rng.randrange(0, 2 * CHUNK)
            results[(o, n)] = hasher.submit(path, o, n).result(timeout=60)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hasher.close()
    assert len(results) == 30
    assert all(d == hashlib.md5(body[o : o + n]).hexdigest() for (o, n), d in results.items())


@needs_lanes
def test_a_stopped_region_gives_an_empty_digest_and_a_short_file_an_error(
    data: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, body = data
    stop = threading.Event()
    stop.set()
    hasher = LaneHasher()
    try:
        assert hasher.submit(path, 0, len(body), stop).result(timeout=60) == ""
        with pytest.raises(OSError, match="ended"):
            hasher.submit(path, len(body) - 10, 100).result(timeout=60)
        with pytest.raises(FileNotFoundError):
            hasher.submit(tmp_path / "gone.bin", 0, 10).result(timeout=60)
        # It goes on hashing after each of those.
        assert hasher.submit(path, 5, 70).result(timeout=60) == hashlib.md5(body[5:75]).hexdigest()
    finally:
        hasher.close()


def test_without_the_kernel_parts_are_hashed_by_hashlib(data: tuple[Path, bytes]) -> None:
    path, body = data
    hasher = part_hasher(2, lanes=False)
    assert isinstance(hasher, ThreadHasher)
    try:
        assert (
            hasher.submit(path, 3, CHUNK).result() == hashlib.md5(body[3 : 3 + CHUNK]).hexdigest()
        )
    finally:
        hasher.close()


@needs_lanes
def test_both_kernels_give_the_same_state_for_every_lane() -> None:
    from teleport_sync.api import _md5lanes  # type: ignore[attr-defined]

    if lanes_kernel() != "avx512vl":
        pytest.skip("this CPU runs the AVX2 kernel only")
    rng = random.Random(11)
    start = bytes(rng.randrange(256) for _ in range(128))
    buffers = [rng.randbytes(64 * 37) for _ in range(8)]
    states = []
    for kernel in (None, "avx2"):
        state = bytearray(start)
        _md5lanes.blocks(state, buffers, 37, kernel)
        states.append(bytes(state))
    assert states[0] == states[1] != start


def test_the_kernel_is_built_where_ci_runs() -> None:
    # CI machines are x86_64 with a C compiler: a build that lost the kernel would slow every
    # upload's checks to hashlib's speed without a word; say so here instead.
    if os.uname().machine != "x86_64" or "avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("not an AVX2 machine")
    assert lanes_available()
