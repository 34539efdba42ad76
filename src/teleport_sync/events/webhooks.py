"""Teleport's signed webhooks: verify, parse, apply; and a small HTTP server to receive them.

Teleport POSTs `{"eid", "sid", "state": "READY" | "ERROR", "error_reason"}` with
`X-Teleport-Signature`, an HMAC-SHA256 of the raw body under the organisation's signing secret.
The signature is checked over the raw bytes, in constant time, before anything is parsed. The
webhook fires for every capture of the organisation: unknown eids are answered 200 and ignored.

A delivery is a hint, never the truth: signatures carry no time or nonce, so any delivery ever
captured can be replayed. One that agrees with the journal changes nothing; one that disagrees
is checked against the API (the capture as the listing shows it), and only what the API says
goes through the journal's state machine (`journal.states.judge_capture_state`), share id and
failure reason included. A delivery for a file whose upload has not completed here moves
nothing. Every delivery that moved nothing is kept in the state history with why. The poller
stays the reconciler for deliveries that never arrive or cannot be checked.

The receiver bounds what a client can hold: each connection has `request_seconds` in all to
send its request, and at most `max_connections` are open at once (a new one closes the oldest
that is still sending), so a flood of slow clients cannot keep a delivery out.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..api.errors import ApiError
from ..journal import FileRecord, Journal, Source
from ..journal.states import SEEN, judge_capture_state
from ..logging import get_logger
from ..models import CaptureOutput, is_terminal

log = get_logger("teleport_sync.webhooks")

SIGNATURE_HEADER = "X-Teleport-Signature"
MAX_BODY_BYTES = 64 * 1024
FAILED_STATES = frozenset({"FAILED", "ERROR"})


class BadDelivery(ValueError):
    """The body is not a webhook we understand (400)."""


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the hex HMAC-SHA256 of `body` (with or without `sha256=`)."""
    if not header:
        return False
    given = header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    # Both sides ASCII bytes: compare_digest refuses non-ASCII str, and a forged header may be.
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


@dataclass(frozen=True)
class Delivery:
    eid: str
    state: str
    sid: str | None
    error_reason: str | None


def parse_delivery(body: bytes) -> Delivery:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadDelivery(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadDelivery("the body is not a JSON object")
    eid, state = data.get("eid"), data.get("state")
    if not isinstance(eid, str) or not eid or not isinstance(state, str) or not state:
        raise BadDelivery("the body needs string fields eid and state")
    sid, reason = data.get("sid"), data.get("error_reason")
    return Delivery(
        eid=eid,
        state=state.strip(),
        sid=sid if isinstance(sid, str) and sid else None,
        error_reason=str(reason) if reason not in (None, "") else None,
    )


def _same_state(journaled: str | None, heard: str) -> bool:
    """READY twice, or FAILED after ERROR (both names of one outcome), in any case."""
    if journaled is None:
        return False
    a, b = journaled.upper(), heard.upper()
    return a == b or (a in FAILED_STATES and b in FAILED_STATES)


# Checks against the API at once, across all deliveries: a flood of replays (each a listing
# of the account) cannot pile up; a delivery over the limit is left to the poller.
MAX_CHECKS_AT_ONCE = 4
_checks = threading.BoundedSemaphore(MAX_CHECKS_AT_ONCE)


def apply_delivery(
    journal: Journal,
    delivery: Delivery,
    verify: Callable[[str], CaptureOutput | None],
    on_terminal: Callable[[FileRecord], None],
    on_unverified: Callable[[], None] = lambda: None,
) -> str:
    """Journal what a delivery is worth; returns the outcome answered to the sender:
    `ignored` (not our capture), `duplicate` (the journal agrees), `applied` (the API confirmed
    it and the capture moved), `refused` (it moved nothing; the history says why) or
    `unverified` (the API could not be asked; the poller is woken to do it)."""
    record = journal.by_eid(delivery.eid)
    if record is None:
        return "ignored"  # another station's or person's capture
    if _same_state(record.capture_state, delivery.state):
        return "duplicate"

    def refuse(note: str) -> str:
        journal.note_state(record.id, delivery.eid, delivery.state, Source.WEBHOOK, note)
        return _refused(record, delivery, note)

    # What the state machine would say even if the API confirmed the delivery: when that is
    # no, the API need not be asked (a replay of an old delivery costs no listing).
    could = judge_capture_state(
        record.upload_state, record.capture_state, delivery.state, Source.WEBHOOK
    )
    if could.outcome == SEEN:
        return refuse(could.note or "nothing to change")
    if not _checks.acquire(blocking=False):
        return _unverified(journal, record, delivery, "too many checks at once", on_unverified)
    try:
        capture = verify(delivery.eid)
    except ApiError as exc:
        return _unverified(journal, record, delivery, str(exc), on_unverified)
    finally:
        _checks.release()
    if capture is None:
        return refuse("the API does not list this capture")
    verdict = journal.observe_reported(record.id, capture, Source.WEBHOOK)
    if verdict.applied and is_terminal(capture.state):
        on_terminal(journal.get(record.id))
    if not _same_state(capture.state, delivery.state):
        return refuse(f"the API says {capture.state}")
    if not verdict.applied:
        return _refused(record, delivery, verdict.note or "nothing to change")
    log.info(
        "capture state", path=record.path, eid=delivery.eid, state=capture.state, source="webhook"
    )
    return "applied"


def _unverified(
    journal: Journal,
    record: FileRecord,
    delivery: Delivery,
    why: str,
    on_unverified: Callable[[], None],
) -> str:
    note = f"not checked with the API ({why}); the poller will ask"
    journal.note_state(record.id, delivery.eid, delivery.state, Source.WEBHOOK, note)
    log.warning("webhook not checked with the API", eid=delivery.eid, why=why)
    on_unverified()
    return "unverified"


def _refused(record: FileRecord, delivery: Delivery, why: str) -> str:
    log.info(
        "webhook moved nothing", path=record.path, eid=delivery.eid, state=delivery.state, why=why
    )
    return "refused"


# A delivery is a few hundred bytes: Teleport sends it in milliseconds. A client still sending
# after this long is slow on purpose, or broken; either way it gives its place up.
REQUEST_SECONDS = 10.0
MAX_CONNECTIONS = 64


class _Connections:
    """The connections still sending their request, and when each must be done.

    A connection over its time, or the oldest one when a new one would pass the limit, is shut
    down (the handler's read then ends): a slow client cannot hold a thread, and a flood of them
    cannot keep out a delivery, which arrives, is read and leaves this table in milliseconds."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self.limit, self.seconds, self._clock = limit, seconds, clock
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()

    def admit(self, sock: socket.socket) -> None:
        with self._lock:
            while len(self._deadlines) >= self.limit:
                oldest = min(self._deadlines, key=self._deadlines.__getitem__)
                self._drop(oldest, "too many connections still sending")
            self._deadlines[sock] = self._clock() + self.seconds

    def sent(self, sock: socket.socket) -> None:
        """The request is read (or the connection ended): no deadline any more."""
        with self._lock:
            self._deadlines.pop(sock, None)

    def reap(self) -> float:
        """Shut down the connections past their time; seconds until the next deadline."""
        now = self._clock()
        with self._lock:
            for sock, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    self._drop(sock, "request not sent in time")
            upcoming = min(self._deadlines.values(), default=now + self.seconds)
        return max(0.05, upcoming - now)

    def _drop(self, sock: socket.socket, why: str) -> None:
        del self._deadlines[sock]
        log.info("webhook connection closed", why=why, seconds=self.seconds)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections: _Connections

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.admit(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.sent(request)
        super().shutdown_request(request)


class WebhookReceiver:
    """A threaded HTTP server on `listen` that takes POSTs on `path` only, bounded as the
    module says (`request_seconds`, `max_connections`)."""

    def __init__(
        self,
        listen: str,
        path: str,
        secret: str,
        apply: Callable[[Delivery], str],
        *,
        on_outcome: Callable[[str], None] | None = None,
        request_seconds: float = REQUEST_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        host, _, port = listen.rpartition(":")
        handler = _handler_class(path, secret.encode(), apply, on_outcome or (lambda _o: None))
        handler.timeout = request_seconds
        self._server = _Server((host.strip("[]"), int(port)), handler)
        self._server.connections = _Connections(max_connections, request_seconds, clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhooks", daemon=True
        )
        self._reaper = threading.Thread(target=self._reap, name="webhooks-reaper", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        self._reaper.start()
        log.info("receiving webhooks", address=f"{self.address[0]}:{self.address[1]}")

    def _reap(self) -> None:
        while not self._stop.wait(self._server.connections.reap()):
            pass

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self._reaper.is_alive():
            self._reaper.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    """One request; the route, secret and callbacks are set on a subclass per receiver."""

    server_version = "teleport-sync"
    sys_version = ""
    timeout = REQUEST_SECONDS  # per read; the whole request is bounded by `_Connections`
    route = "/"
    secret = b""

    def apply(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def on_outcome(self, outcome: str) -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # our own log lines say what matters, without the raw request line

    def _answer(self, status: int, outcome: str, message: str, **headers: str) -> None:
        self.on_outcome(outcome)
        body = json.dumps({"outcome": outcome, "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _not_post(self) -> None:
        if self.path.split("?", 1)[0] != self.route:
            self._answer(404, "not_found", f"webhooks are received at {self.route}")
        else:
            self._answer(405, "bad_method", "use POST", Allow="POST")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_post

    def _read_body(self) -> bytes | None:
        """The body within the size limit, or None once an error has been answered."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._answer(411, "bad_request", "a Content-Length is required")
            return None
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # the body is left unread
            self._answer(413, "too_large", f"bodies over {MAX_BODY_BYTES} bytes are refused")
            return None
        body = self.rfile.read(int(length))
        self.server.connections.sent(self.connection)  # type: ignore[attr-defined]
        return body

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != self.route:
            self._answer(404, "not_found", f"webhooks are received at {self.route}")
            return
        body = self._read_body()
        if body is None:
            return
        if not verify_signature(self.secret, body, self.headers.get(SIGNATURE_HEADER)):
            log.warning("webhook refused: bad or missing signature", peer=self.client_address[0])
            self._answer(401, "bad_signature", f"missing or wrong {SIGNATURE_HEADER}")
            return
        try:
            delivery = parse_delivery(body)
        except BadDelivery as exc:
            log.warning("webhook refused: bad body", error=str(exc))
            self._answer(400, "bad_request", str(exc))
            return
        try:
            outcome = self.apply(delivery)
        except Exception:  # the journal is unavailable: ask the sender to try again
            log.exception("webhook could not be applied", eid=delivery.eid)
            self._answer(503, "unavailable", "could not record it now; retry later")
            return
        self._answer(200, outcome, "ok")


def _handler_class(
    path: str,
    secret: bytes,
    apply: Callable[[Delivery], str],
    on_outcome: Callable[[str], None],
) -> type[BaseHTTPRequestHandler]:
    return type(
        "WebhookHandler",
        (_Handler,),
        {
            "route": path,
            "secret": secret,
            "apply": lambda _self, delivery: apply(delivery),
            "on_outcome": lambda _self, outcome: on_outcome(outcome),
        },
    )
