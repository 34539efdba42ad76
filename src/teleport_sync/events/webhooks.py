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

The receiver bounds what a client can hold and queues what it cannot take at once: a pool of
`max_connections` workers reads requests, accepted connections wait for one (up to `WAITING`),
and the kernel's listen queue (`LISTEN_BACKLOG`) holds the rest, so a burst of valid deliveries
is answered, not reset. Each connection has `request_seconds` in all to send its request from
when a worker takes it, and while others wait a connection still sending after a tenth of that
gives its worker up, so a flood of slow clients cannot keep a delivery out. A client that goes
away (a dropped connection, a broken pipe) is one log line, never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from ..api.errors import ApiError
from ..journal import FileRecord, Journal, Source
from ..journal.states import SEEN, judge_capture_state, malformed_state
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
    malformed = malformed_state(state.strip())
    if malformed is not None:
        raise BadDelivery(malformed)
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
# Connections read at once (the worker pool), accepted ones waiting for a worker, and the
# kernel's listen queue behind them (capped by net.core.somaxconn): a burst of up to
# WORKERS + WAITING + LISTEN_BACKLOG deliveries at once is queued and answered, never reset.
WORKERS = 16
WAITING = 256
LISTEN_BACKLOG = 1024
# While connections wait for a worker, one still sending after this share of its time gives
# its worker up: a flood of slow clients cannot keep a delivery waiting for long.
PATIENCE_SHARE = 0.1


class _Connections:
    """The connections workers are reading, when each must be done, and how many wait.

    A connection over its time is shut down (the handler's read then ends). While others wait
    for a worker, one still sending after `patience` is shut down too: a delivery is read in
    milliseconds, so only slow clients ever give their place up."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self._clock = seconds, clock
        self.patience = seconds * PATIENCE_SHARE
        self._started: dict[socket.socket, float] = {}
        self._cut: set[socket.socket] = set()  # shut down here: their handler's errors are ours
        self.waiting = 0
        self._lock = threading.Lock()

    def accepted(self) -> None:
        with self._lock:
            self.waiting += 1

    def start(self, sock: socket.socket) -> None:
        """A worker begins reading `sock`: its time runs from now."""
        with self._lock:
            self.waiting -= 1
            self._started[sock] = self._clock()

    def sent(self, sock: socket.socket) -> None:
        """The request is read (or the connection ended): no deadline any more."""
        with self._lock:
            self._started.pop(sock, None)

    def ended(self, sock: socket.socket) -> bool:
        """Forget `sock`; whether it was cut off here (its closing is already logged)."""
        with self._lock:
            self._started.pop(sock, None)
            if sock in self._cut:
                self._cut.discard(sock)
                return True
            return False

    def reap(self) -> float:
        """Shut down the connections past their time (or their patience, while others wait);
        seconds until the next look."""
        now = self._clock()
        with self._lock:
            for sock, started in sorted(self._started.items(), key=lambda item: item[1]):
                if now - started >= self.seconds:
                    self._drop(sock, "request not sent in time")
                elif self.waiting and now - started >= self.patience:
                    self._drop(sock, "still sending while others wait")
            due = [started + self.seconds for started in self._started.values()]
        # Never asleep longer than the patience: others may start waiting meanwhile.
        return min(max(0.05, min(due, default=now + self.seconds) - now), self.patience)

    def _drop(self, sock: socket.socket, why: str) -> None:
        del self._started[sock]
        self._cut.add(sock)
        log.info("webhook connection closed", why=why, seconds=self.seconds)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Server(HTTPServer):
    """An HTTP server whose requests are handled by a bounded pool of workers: accepted
    connections wait for one (at most `WAITING`; the accept loop then pauses and the kernel's
    listen queue holds the rest)."""

    request_queue_size = LISTEN_BACKLOG
    connections: _Connections

    def __init__(self, address: tuple[str, int], handler: Any, workers: int) -> None:
        # Made before binding: a failed bind closes the server at once.
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="webhook")
        self._room = threading.Semaphore(workers + WAITING)
        self.closing = threading.Event()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._room.acquire(timeout=0.2):
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        self.connections.accepted()
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.connections.start(request)
            self.finish_request(request, client_address)
        except Exception:
            if not self.connections.ended(request):  # else its one line is already written
                self.handle_error(request, client_address)
        finally:
            self.connections.ended(request)
            self.shutdown_request(request)
            self._room.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or broke the exchange: one line, never a traceback."""
        error = sys.exc_info()[1]
        log.info(
            "webhook client dropped",
            peer=str(client_address[0]) if client_address else None,
            error=f"{type(error).__name__}: {error}" if error else None,
        )

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class WebhookReceiver:
    """An HTTP server on `listen` that takes POSTs on `path` only, bounded as the module says
    (`request_seconds`; `max_connections` read at once by its worker pool)."""

    def __init__(
        self,
        listen: str,
        path: str,
        secret: str,
        apply: Callable[[Delivery], str],
        *,
        on_outcome: Callable[[str], None] | None = None,
        request_seconds: float = REQUEST_SECONDS,
        max_connections: int = WORKERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        host, _, port = listen.rpartition(":")
        handler = _handler_class(path, secret.encode(), apply, on_outcome or (lambda _o: None))
        # The reaper cuts a connection at `request_seconds`; the read timeout is only its backstop.
        handler.timeout = request_seconds + 1.0
        self._server = _Server((host.strip("[]"), int(port)), handler, max_connections)
        self._server.connections = _Connections(request_seconds, clock)
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
        self._server.closing.set()
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

    def log_error(self, format: str, *args: Any) -> None:
        # A malformed or timed-out request (answered 400/408, or closed): one line, quietly.
        log.debug("webhook request refused", peer=self.client_address[0], why=format % args)

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
        if length is None or not (length.isascii() and length.isdigit()):  # "²" is a digit too
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
