"""Part planning: pure arithmetic, checked at the edges."""

from __future__ import annotations

import itertools

import pytest

from teleport_sync.engine import MAX_PARTS, PartPlan, UploadFailed, plan_parts

MIB = 1024 * 1024


def test_last_part_is_the_remainder() -> None:
    plan = plan_parts(12 * MIB + 5, 5 * MIB, 3)
    assert plan == [
        PartPlan(1, 0, 5 * MIB),
        PartPlan(2, 5 * MIB, 5 * MIB),
        PartPlan(3, 10 * MIB, 2 * MIB + 5),
    ]


def test_exact_multiple_has_no_empty_tail() -> None:
    plan = plan_parts(10 * MIB, 5 * MIB, 2)
    assert [p.size for p in plan] == [5 * MIB, 5 * MIB]


def test_one_byte_file_is_one_part() -> None:
    assert plan_parts(1, 50_000_000, 1) == [PartPlan(1, 0, 1)]


def test_parts_cover_the_file_without_gaps() -> None:
    size = 123_456_789
    plan = plan_parts(size, 7_000_000, 18)
    assert sum(p.size for p in plan) == size
    assert all(b.offset == a.offset + a.size for a, b in itertools.pairwise(plan))


def test_ten_thousand_parts_is_the_limit() -> None:
    assert len(plan_parts(MAX_PARTS * 10, 10, MAX_PARTS)) == MAX_PARTS
    with pytest.raises(UploadFailed, match="at most 10000"):
        plan_parts(MAX_PARTS * 10 + 1, 10, MAX_PARTS + 1)


def test_a_plan_that_does_not_cover_the_file_is_refused() -> None:
    with pytest.raises(UploadFailed, match="does not cover"):
        plan_parts(12 * MIB, 5 * MIB, 2)
    with pytest.raises(UploadFailed, match="chunk size"):
        plan_parts(10, 0, 1)
