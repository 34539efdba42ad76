"""Values asked for a little ahead of need, in a known order.

The engine uses it for presigned part URLs: each costs an API round trip (~1 ms on loopback,
100 ms or more to a distant API), and without a look-ahead every part's PUT would wait for one
while the link sits idle.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Prefetcher(Generic[K, V]):
    """`fetch(key)` run on `executor` for the next `ahead` keys of `order` not yet taken.

    `ahead` may be a function, asked again at each `take`: how far ahead to look may grow
    (the engine's window of parts in flight widens on a long path).

    `take(key)` returns the prefetched value (or its exception), or fetches it on the spot if
    the key was never scheduled. Each key is prefetched at most once: a retry must `fetch`
    anew, because a value may be spent (a URL that expired, say). Without an executor `fetch`
    is called as its key is scheduled: for a `fetch` that only starts work and returns at once
    (a hasher's `submit`, whose value is its own future).
    """

    def __init__(
        self,
        fetch: Callable[[K], V],
        order: Iterable[K],
        *,
        ahead: int | Callable[[], int],
        executor: Executor | None,
    ) -> None:
        self._fetch = fetch
        self._ahead = ahead if callable(ahead) else lambda: ahead
        self._executor = executor
        self._lock = threading.Lock()
        self._waiting: deque[K] = deque(order)
        self._fetching: dict[K, Future[V]] = {}
        self._top_up()

    def _top_up(self) -> None:
        """Schedule keys until `ahead` are fetching (or none are left)."""
        while True:
            with self._lock:
                if not self._waiting or len(self._fetching) >= self._ahead():
                    return
            self._schedule_next()

    def _schedule_next(self) -> None:
        with self._lock:
            if not self._waiting:
                return
            key = self._waiting.popleft()
            if self._executor is not None:
                self._fetching[key] = self._executor.submit(self._fetch, key)
                return
            future: Future[V] = Future()
            self._fetching[key] = future
        try:
            future.set_result(self._fetch(key))
        except Exception as exc:
            future.set_exception(exc)

    def take(self, key: K) -> V:
        with self._lock:
            future = self._fetching.pop(key, None)
            if future is None and key in self._waiting:
                self._waiting.remove(key)
        self._top_up()
        if future is None:
            return self._fetch(key)
        return future.result()

    def cancel(self) -> None:
        """Drop what has not started; nothing more is scheduled."""
        with self._lock:
            self._waiting.clear()
            futures, self._fetching = list(self._fetching.values()), {}
        for future in futures:
            future.cancel()
