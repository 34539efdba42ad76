"""What the emulator saw: every API call and part PUT, for tests to assert on.

`listeners` are called after each call is handled (before the answer is sent), with the call's
sequence number: crash tests use it to SIGKILL a client right after its Nth call.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    seq: int
    kind: str  # "api", "token", "put" or "model"
    method: str
    path: str
    status: int
    eid: str | None = None
    part: int | None = None
    # For part PUTs: when the request arrived and when storage finished (monotonic seconds).
    started: float | None = None
    finished: float | None = None
    # API calls: the query string; model downloads (kind "model"): the Range header asked for.
    query: str | None = None
    range: str | None = None


@dataclass
class EmulatorStats:
    calls: list[Call] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    signatures_issued: list[str] = field(default_factory=list)
    listeners: list[Callable[[Call], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, kind: str, method: str, path: str, status: int, **extra: Any) -> Call:
        with self._lock:
            call = Call(len(self.calls) + 1, kind, method, path, status, **extra)
            self.calls.append(call)
            listeners = list(self.listeners)
        for listener in listeners:
            listener(call)
        return call

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def successful_puts(self, eid: str) -> Counter[int]:
        """How many times each part of a capture was stored (2xx PUTs)."""
        return Counter(
            c.part
            for c in self.snapshot()
            if c.kind == "put" and c.eid == eid and 200 <= c.status < 300 and c.part is not None
        )

    def count(self, kind: str, method: str | None = None, path_suffix: str = "") -> int:
        return sum(
            1
            for c in self.snapshot()
            if c.kind == kind
            and (method is None or c.method == method)
            and c.path.endswith(path_suffix)
        )

    @property
    def listings(self) -> int:
        """Listing requests answered so far (`GET /api/v1/captures`, any status): what
        following captures costs an account."""
        return sum(
            1 for c in self.snapshot() if c.kind == "api" and c.method == "GET" and _is_listing(c)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "listings": self.listings,
            "calls": [c.__dict__ for c in self.snapshot()],
            "tokens_issued": len(self.tokens_issued),
        }


def _is_listing(call: Call) -> bool:
    return call.path.rstrip("/") == "/api/v1/captures"
