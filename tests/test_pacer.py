"""The pacer: one per remote, shared by every thread, on a fake clock."""

from __future__ import annotations

import random
import threading

from teleport_sync.retry import Pacer, RetryPolicy

from .conftest import FakeClock


class LockedClock(FakeClock):
    """The fake clock, safe for two threads: each thread's sleeps are recorded by name."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.by_thread: dict[str, list[float]] = {}

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.by_thread.setdefault(threading.current_thread().name, []).append(seconds)
            super().sleep(seconds)


def test_one_threads_retry_after_delays_the_other_threads_next_call() -> None:
    clock = LockedClock()
    pacer = Pacer(RetryPolicy(rng=random.Random(1)), clock)
    refused = threading.Event()

    def first() -> None:
        pacer.wait()
        pacer.failed(0, retry_after=2.0)  # 503 SlowDown, Retry-After: 2
        refused.set()

    def second() -> None:
        refused.wait()
        pacer.wait()  # its next call, after the other thread's refusal
        pacer.succeeded()

    threads = [threading.Thread(target=f, name=f.__name__) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.by_thread == {"second": [2.0]}


def test_a_call_waits_only_for_what_is_left_of_the_pause() -> None:
    clock = FakeClock()
    pacer = Pacer(RetryPolicy(), clock)
    pacer.failed(0, retry_after=2.0)
    clock.advance(1.5)
    pacer.wait()
    assert clock.sleeps == [0.5]
    pacer.wait()  # the pause is over
    assert clock.sleeps == [0.5]


def test_successes_decay_the_shared_sleep_back_to_zero() -> None:
    clock = FakeClock()
    pacer = Pacer(RetryPolicy(base_delay=0.5), clock)
    assert pacer.failed(0, retry_after=8.0) == 8.0
    assert pacer.sleep == 8.0
    seen = []
    for _ in range(12):
        pacer.succeeded()
        seen.append(pacer.sleep)
    assert seen[:3] == [4.0, 2.0, 1.0]
    assert seen[-1] == 0.0 and seen == sorted(seen, reverse=True)


def test_while_the_sleep_is_raised_any_failure_waits_at_least_as_long() -> None:
    clock = FakeClock()
    pacer = Pacer(RetryPolicy(base_delay=0.01, max_delay=0.01), clock)
    pacer.failed(0, retry_after=4.0)
    pacer.succeeded()  # 2.0 left
    assert pacer.failed(0) == 2.0  # not the policy's 0.01: the remote was refusing moments ago


def test_no_failure_no_wait() -> None:
    clock = FakeClock()
    pacer = Pacer(RetryPolicy(), clock)
    for _ in range(5):
        pacer.wait()
        pacer.succeeded()
    assert clock.sleeps == [] and pacer.sleep == 0.0
