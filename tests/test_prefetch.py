"""The look-ahead used for part URLs."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from teleport_sync.api.prefetch import Prefetcher


def test_values_are_fetched_ahead_in_order_and_each_once() -> None:
    fetched: list[int] = []
    lock = threading.Lock()

    def fetch(key: int) -> str:
        with lock:
            fetched.append(key)
        return f"url-{key}"

    with ThreadPoolExecutor(2) as pool:
        prefetch = Prefetcher(fetch, [1, 2, 3, 4, 5], ahead=2, executor=pool)
        assert prefetch.take(1) == "url-1"
        pool.submit(lambda: None).result()  # let the scheduled fetch run
        assert prefetch.take(2) == "url-2"
        assert prefetch.take(3) == "url-3"
        assert prefetch.take(3) == "url-3"  # taken twice: the second is fetched on the spot
    assert sorted(fetched[:3]) == [1, 2, 3]  # 3 was asked for before anyone took it
    assert fetched.count(3) == 2
    assert fetched.count(5) == 0 or fetched.index(5) > fetched.index(3)


def test_a_failed_fetch_is_raised_by_take_and_cancel_stops_scheduling() -> None:
    calls: list[int] = []

    def fetch(key: int) -> str:
        calls.append(key)
        if key == 2:
            raise TimeoutError("API slow")
        return str(key)

    with ThreadPoolExecutor(1) as pool:
        prefetch = Prefetcher(fetch, [1, 2, 3, 4], ahead=1, executor=pool)
        assert prefetch.take(1) == "1"
        with pytest.raises(TimeoutError, match="API slow"):
            prefetch.take(2)
        prefetch.cancel()
        assert prefetch.take(4) == "4"  # never scheduled any more: fetched on the spot
    assert 4 in calls and calls.count(4) == 1


def test_without_an_executor_fetch_is_called_as_keys_are_scheduled() -> None:
    # As the engine asks a hasher for parts' MD5s ahead of their PUTs: `fetch` only queues work
    # and returns its future, so it is called in place, `ahead` keys before each is taken.
    asked: list[int] = []

    def fetch(key: int) -> Future[str]:
        asked.append(key)
        future: Future[str] = Future()
        future.set_result(f"md5-{key}")
        return future

    prefetch = Prefetcher(fetch, [1, 2, 3, 4, 5, 6], ahead=3, executor=None)
    assert asked == [1, 2, 3]  # before anything was taken
    assert prefetch.take(1).result() == "md5-1"
    assert asked == [1, 2, 3, 4]  # one taken, one more asked
    assert prefetch.take(6).result() == "md5-6"  # out of turn: asked on the spot, once
    for key in (2, 3, 4, 5):
        prefetch.take(key)
    assert sorted(asked) == [1, 2, 3, 4, 5, 6]


def test_without_an_executor_a_failing_fetch_is_raised_by_take() -> None:
    def fetch(key: int) -> str:
        if key == 2:
            raise OSError("cannot open the file")
        return str(key)

    prefetch = Prefetcher(fetch, [1, 2, 3], ahead=2, executor=None)
    assert prefetch.take(1) == "1"
    with pytest.raises(OSError, match="cannot open"):
        prefetch.take(2)
    assert prefetch.take(3) == "3"


def test_how_far_ahead_may_grow_between_takes() -> None:
    # The engine looks a round ahead of its window of parts in flight, which widens on a long
    # path: each take tops the look-ahead up to what `ahead` says now.
    asked: list[int] = []
    width = [2]

    def fetch(key: int) -> int:
        asked.append(key)
        return key

    prefetch = Prefetcher(fetch, range(1, 11), ahead=lambda: width[0], executor=None)
    assert asked == [1, 2]
    width[0] = 5
    assert prefetch.take(1) == 1
    assert asked == [1, 2, 3, 4, 5, 6]  # 2..6 fetched ahead: five
    width[0] = 1
    assert prefetch.take(2) == 2
    assert asked == [1, 2, 3, 4, 5, 6]  # narrower: nothing more until fewer are ahead
