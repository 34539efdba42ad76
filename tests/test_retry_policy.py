"""The one retry policy type: full jitter for requests and parts, a floor for whole files."""

from __future__ import annotations

import random

from teleport_sync.daemon import RETRY_BASE_SECONDS, RETRY_MAX_SECONDS, file_retry_policy
from teleport_sync.retry import RetryPolicy


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, rng=random.Random(7))
    delays = [policy.backoff(3) for _ in range(2000)]
    assert 0 <= min(delays) < 0.5 and 7.5 < max(delays) <= 8.0


def test_a_file_is_never_retried_sooner_than_half_its_ceiling() -> None:
    policy = file_retry_policy(random.Random(7))
    for failures in range(1, 12):
        ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (failures - 1))
        delays = [policy.backoff(failures - 1) for _ in range(500)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling


def test_retry_after_wins_over_the_floor() -> None:
    policy = file_retry_policy(random.Random(7))
    assert policy.backoff(5, retry_after=3.0) == 3.0
