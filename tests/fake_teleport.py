"""A small in-test fake of the Teleport endpoints, for the engine's unit tests over
`httpx.MockTransport`.

It keeps captures in a dict, answers as the API reference says, and records every request
(except the token's, so the tests do not depend on how the token is fetched). A test changes
the answer of the next request to a route with `script(route, action, ...)`: an action gets the
request and `real` (the fake's own answer, which it may call, e.g. to let a create land and then
lose its answer). The emulator (tests/test_engine.py) is the faithful server; this one is for
branches, and is small enough to read in one go.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from teleport_sync.api import ClientCredentialsAuth, TeleportClient
from teleport_sync.engine import Uploader
from teleport_sync.inputs import identify
from teleport_sync.journal import FileRecord, Journal
from teleport_sync.retry import Clock, RetryPolicy

API = "https://api.test"
STORAGE = "https://storage.test"
TOKEN_URL = "https://auth.test/oauth2/token"

# The fake's own answer to the request at hand, for an action that lets the request land.
Real = Callable[[], httpx.Response]
Action = Callable[[httpx.Request, Real], httpx.Response]

_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("create", "POST", re.compile(r"^/api/v1/captures$")),
    ("list", "GET", re.compile(r"^/api/v1/captures$")),
    ("url", "POST", re.compile(r"^/api/v1/captures/(?P<eid>[^/]+)/create-upload-url/(?P<n>\d+)$")),
    ("uploaded", "POST", re.compile(r"^/api/v1/captures/(?P<eid>[^/]+)/uploaded$")),
    ("rename", "PUT", re.compile(r"^/api/v1/captures/(?P<eid>[^/]+)$")),
    ("delete", "DELETE", re.compile(r"^/api/v1/captures/(?P<eid>[^/]+)$")),
    ("put", "PUT", re.compile(r"^/(?P<eid>[^/]+)/(?P<n>\d+)$")),  # storage: presigned part URLs
]


@dataclass
class Capture:
    eid: str
    name: str
    state: str = "CREATED"
    # When it was made (as a server reports it): searches of the listing stop at old entries.
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    parts: dict[int, bytes] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"eid": self.eid, "name": self.name, "state": self.state, "created": self.created}


@dataclass
class Seen:
    route: str
    method: str
    url: httpx.URL
    body: Any  # the JSON body of an API request; None for storage and bodiless requests

    def __str__(self) -> str:
        return f"{self.method} {self.url.path}"


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def s3_answer(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    """An error as S3 sends it: an XML `<Error>`."""
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return httpx.Response(status, text=xml, headers=headers)


def s3_error(status: int, code: str, message: str, **headers: str) -> Action:
    return lambda request, real: s3_answer(status, code, message, **headers)


def reply(status: int, body: Any = None, **headers: str) -> Action:
    return lambda request, real: httpx.Response(status, json=body, headers=headers)


def lost_answer(request: httpx.Request, real: Real) -> httpx.Response:
    """The server does the work, and the answer never arrives."""
    real()
    raise httpx.ReadTimeout("timed out reading the answer", request=request)


class FakeTeleport:
    """The API and storage in one handler; thread-safe (part threads call it at once)."""

    def __init__(self, chunk_size: int = 40) -> None:
        self.chunk_size = chunk_size
        self.captures: dict[str, Capture] = {}
        self.seen: list[Seen] = []
        self._scripted: dict[str, list[Action]] = {}
        self._lock = threading.RLock()
        self._eids = 0
        self._urls = 0

    def script(self, route: str, *actions: Action) -> None:
        """The next requests to `route` are answered by `actions`, one each, in order."""
        assert route in {name for name, _, _ in _ROUTES}, route
        with self._lock:
            self._scripted.setdefault(route, []).extend(actions)

    def unused(self) -> dict[str, int]:
        """Scripted answers no request took: a test whose script outlived it proves less."""
        with self._lock:
            return {route: len(queue) for route, queue in self._scripted.items() if queue}

    def add(self, name: str, *, state: str = "CREATED", created: str | None = None) -> Capture:
        """A capture made elsewhere: by a create whose answer was lost, another station, a
        person in the web UI."""
        with self._lock:
            self._eids += 1
            capture = Capture(f"c{self._eids}", name, state)
            if created is not None:
                capture.created = created
            self.captures[capture.eid] = capture
            return capture

    def requests(self, *routes: str) -> list[str]:
        """`METHOD /path` of each request to `routes` (all routes when none), in order."""
        with self._lock:
            return [str(s) for s in self.seen if not routes or s.route in routes]

    def put_urls(self, part: int | None = None) -> list[str]:
        """The full URLs (signature included) of the part PUTs, of one part or all."""
        with self._lock:
            puts = [s.url for s in self.seen if s.route == "put"]
        return [str(u) for u in puts if part is None or u.path.endswith(f"/{part}")]

    # -- the handler -----------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return httpx.Response(200, json={"access_token": "tok-fake", "expires_in": 3600})
        route, args = self._route(request)
        if route != "put":
            assert request.headers["authorization"] == "Bearer tok-fake"
        else:
            assert "authorization" not in request.headers  # presigned URLs carry their own
        body = json.loads(request.content) if route != "put" and request.content else None
        with self._lock:
            self.seen.append(Seen(route, request.method, request.url, body))
            queue = self._scripted.get(route)
            action = queue.pop(0) if queue else None

        def real() -> httpx.Response:
            with self._lock:
                return getattr(self, f"_{route}")(request, body, **args)

        return action(request, real) if action is not None else real()

    def _route(self, request: httpx.Request) -> tuple[str, dict[str, str]]:
        for name, method, pattern in _ROUTES:
            match = pattern.match(request.url.path)
            if match and request.method == method:
                if (name == "put") != (request.url.host == "storage.test"):
                    continue
                return name, match.groupdict()
        raise AssertionError(f"the fake has no route for {request.method} {request.url}")

    def _missing(self, eid: str) -> httpx.Response | None:
        """The API's 404 for a capture that is not (or no longer) on the account."""
        if eid in self.captures:
            return None
        return httpx.Response(404, json={"detail": f"capture {eid} not found"})

    def _create(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        capture = self.add(body["name"])
        num_parts = max(1, math.ceil(body["bytesize"] / self.chunk_size))
        answer = {"eid": capture.eid, "chunk_size": self.chunk_size, "num_parts": num_parts}
        return httpx.Response(200, json=answer)

    def _list(self, request: httpx.Request, body: None) -> httpx.Response:
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"])
        page = list(self.captures.values())[offset : offset + limit]
        return httpx.Response(200, json=[c.as_json() for c in page])

    def _url(
        self, request: httpx.Request, body: dict[str, Any], eid: str, n: str
    ) -> httpx.Response:
        if (missing := self._missing(eid)) is not None:
            return missing
        self._urls += 1  # each URL is new: a signature of its own
        url = f"{STORAGE}/{eid}/{n}?X-Amz-Signature=sig{self._urls}"
        return httpx.Response(
            200, json={"eid": eid, "upload_url": url, "chunk_size": self.chunk_size}
        )

    def _put(self, request: httpx.Request, body: None, eid: str, n: str) -> httpx.Response:
        if eid not in self.captures:
            return s3_answer(404, "NoSuchUpload", "The specified upload does not exist.")
        # The stream, not `request.content`: `put_part` swaps a `FileRegion` in as the stream
        # of a request built without a body, and httpx has already cached that empty body.
        assert isinstance(request.stream, httpx.SyncByteStream)
        data = b"".join(request.stream)
        assert len(data) == int(request.headers["content-length"])
        self.captures[eid].parts[int(n)] = data
        return httpx.Response(200, headers={"ETag": md5_etag(data)})

    def _uploaded(self, request: httpx.Request, body: dict[str, Any], eid: str) -> httpx.Response:
        if (missing := self._missing(eid)) is not None:
            return missing
        capture = self.captures[eid]
        for part in body["parts"]:
            data = capture.parts.get(part["number"])
            if data is None or md5_etag(data) != part["etag"]:
                return s3_answer(400, "InvalidPart", "One or more parts could not be found.")
        capture.state = "UPLOADED"
        return httpx.Response(200, json=capture.as_json())

    def _rename(self, request: httpx.Request, body: dict[str, Any], eid: str) -> httpx.Response:
        if (missing := self._missing(eid)) is not None:
            return missing
        self.captures[eid].name = body["name"]
        return httpx.Response(200, json=self.captures[eid].as_json())

    def _delete(self, request: httpx.Request, body: None, eid: str) -> httpx.Response:
        if (missing := self._missing(eid)) is not None:
            return missing
        del self.captures[eid]
        return httpx.Response(204)


def fake_client(fake: FakeTeleport, clock: Clock, *, attempts: int = 2) -> TeleportClient:
    """The real HTTP client, every byte of it going to `fake` (the token request too: it rides
    the API client through `ClientCredentialsAuth`'s auth flow); retries of its own calls
    (`attempts` each) sleep on `clock`."""
    transport = httpx.MockTransport(fake.handler)
    auth = ClientCredentialsAuth(
        token_url=TOKEN_URL,
        client_id="id",
        client_secret="secret",
        clock=clock,
    )
    return TeleportClient(
        base_url=API,
        auth=auth,
        transport=transport,
        storage_transport=transport,
        clock=clock,
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.5, max_delay=4),
    )


@contextmanager
def fake_uploader(fake: FakeTeleport, clock: Clock, journal: Journal) -> Iterator[Uploader]:
    """The engine over `fake_client`: one part at a time (so request order is fixed), three
    attempts per part, backoff jitter from a seeded generator, every sleep on `clock`."""
    with fake_client(fake, clock) as client:
        policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4, rng=random.Random(5))
        yield Uploader(client, journal, concurrency=1, clock=clock, part_policy=policy)


def register(journal: Journal, path: Path, token: str | None = None) -> FileRecord:
    """The file's row; with `token`, as a run that crashed after journaling its intent left it."""
    record = journal.register(str(path), identify(path), "video", "walk.mp4")
    if token is not None:
        journal.mark_create_intent(record.id, token)
    return journal.get(record.id)
