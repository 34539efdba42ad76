"""The pacer: one per remote, shared by every thread, on a fake clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import httpx

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


# -- one pacer for the account: every caller of the client --------------------------------


def _account_client(handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock):  # type: ignore[no-untyped-def]
    from teleport_sync.api import TeleportClient

    return TeleportClient(
        base_url="https://api.test",
        auth=httpx.Auth(),  # no token: the handler answers anything
        transport=httpx.MockTransport(handler),
        clock=clock,
        policy=RetryPolicy(max_attempts=3, rng=random.Random(1)),
    )


def test_a_create_refused_with_retry_after_slows_the_next_poll_and_is_counted() -> None:
    clock = FakeClock()
    refused: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and not refused:
            refused.append(request.url.path)
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow"})
        return httpx.Response(200, json=[])

    from teleport_sync.api import TransientError
    from teleport_sync.models import NewCaptureInput

    with _account_client(handler, clock) as client:
        request = NewCaptureInput(name="a", bytesize=1, input_data_format="video")
        try:
            client.create_capture(request)  # one attempt: the engine retries creates itself
        except TransientError as exc:
            assert exc.retry_after == 7.0
        else:
            raise AssertionError("the 429 was not raised")
        # The poller's next listing, on another caller's behalf, waits the pause out first.
        assert client.find_captures(["e1"]).found == {}
        assert clock.sleeps == [7.0]
        assert (client.pacer.waits, client.pacer.waited_seconds) == (1, 7.0)
        assert client.listing.requests == 1


class StoppedClock(LockedClock):
    """Sleeps are recorded by thread and take no time: every thread sees the same pause."""

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.by_thread.setdefault(threading.current_thread().name, []).append(seconds)


def test_a_listing_refused_with_503_slows_an_upload_url_request_of_another_thread() -> None:
    clock = StoppedClock()
    answered = threading.Event()
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET" and calls.count("GET /api/v1/captures") == 1:
            return httpx.Response(503, headers={"Retry-After": "3"}, json={"detail": "busy"})
        if request.method == "GET":
            return httpx.Response(200, json=[])
        return httpx.Response(
            200,
            json={"eid": "e1", "part_no": 1, "upload_url": "https://s3.test/p", "chunk_size": 5},
        )

    with _account_client(handler, clock) as client:

        def poll() -> None:
            client.find_captures(["e1"])  # refused once, then retried after the pause
            answered.set()

        def upload() -> None:
            while client.pacer.sleep == 0 and not answered.is_set():
                threading.Event().wait(0.001)  # until the listing was refused
            client.create_upload_url("e1", 1, 5, retry=False)

        threads = [threading.Thread(target=f, name=f.__name__) for f in (poll, upload)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    # Both callers waited for the one pause the server asked for, not only the refused one.
    assert clock.by_thread == {"poll": [3.0], "upload": [3.0]}
    assert client.pacer.waits == 2
