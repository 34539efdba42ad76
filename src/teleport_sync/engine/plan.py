"""How a file is cut into parts: the server's chunk size and part count, checked."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UploadFailed

MAX_PARTS = 10_000


@dataclass(frozen=True)
class PartPlan:
    number: int
    offset: int
    size: int


def plan_parts(bytesize: int, chunk_size: int, num_parts: int) -> list[PartPlan]:
    """Byte ranges of each part; refuses a plan that does not cover the file exactly."""
    if chunk_size <= 0:
        raise UploadFailed(f"the server chose a chunk size of {chunk_size} bytes")
    needed = max(1, math.ceil(bytesize / chunk_size))
    if num_parts != needed:
        raise UploadFailed(
            f"the server's plan ({num_parts} parts of {chunk_size} bytes) does not cover "
            f"{bytesize} bytes, which need {needed} parts"
        )
    if num_parts > MAX_PARTS:
        raise UploadFailed(
            f"{bytesize} bytes in parts of {chunk_size} bytes would be {num_parts} parts; "
            f"S3 allows at most {MAX_PARTS}"
        )
    return [
        PartPlan(n, (n - 1) * chunk_size, min(chunk_size, bytesize - (n - 1) * chunk_size))
        for n in range(1, num_parts + 1)
    ]
