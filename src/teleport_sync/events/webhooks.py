"""Teleport's signed webhooks: verify, parse, apply; and a small HTTP server to receive them.

Teleport POSTs `{"eid", "sid", "state": "READY" | "ERROR", "error_reason"}` with
`X-Teleport-Signature`, an HMAC-SHA256 of the raw body under the organisation's signing secret.
The signature is checked over the raw bytes, in constant time, before anything is parsed. The
webhook fires for every capture of the organisation: unknown eids are answered 200 and ignored.
Deliveries are idempotent (a state already journaled changes nothing), and the poller stays the
reconciler for deliveries that never arrive.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..journal import FileRecord, Journal
from ..logging import get_logger
from ..models import is_terminal

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


def apply_delivery(
    journal: Journal, delivery: Delivery, on_terminal: Callable[[FileRecord], None]
) -> str:
    """Journal what the webhook says; returns `ignored`, `duplicate` or `applied`."""
    record = journal.by_eid(delivery.eid)
    if record is None:
        return "ignored"  # another station's or person's capture
    if _same_state(record.capture_state, delivery.state):
        if delivery.sid and not record.sid:
            journal.record_state(record.id, record.capture_state or delivery.state, delivery.sid)
        return "duplicate"
    journal.record_state(record.id, delivery.state, delivery.sid, source="webhook")
    if delivery.state.upper() in FAILED_STATES:
        journal.record_capture_error(record.id, delivery.error_reason or "no reason given")
    log.info(
        "capture state",
        path=record.path,
        eid=delivery.eid,
        state=delivery.state,
        source="webhook",
        reason=delivery.error_reason,
    )
    if is_terminal(delivery.state):
        on_terminal(journal.get(record.id))
    return "applied"


class WebhookReceiver:
    """A threaded HTTP server on `listen` that takes POSTs on `path` only."""

    def __init__(
        self,
        listen: str,
        path: str,
        secret: str,
        apply: Callable[[Delivery], str],
        *,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        host, _, port = listen.rpartition(":")
        handler = _handler_class(path, secret.encode(), apply, on_outcome or (lambda _o: None))
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhooks", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        log.info("receiving webhooks", address=f"{self.address[0]}:{self.address[1]}")

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    """One request; the route, secret and callbacks are set on a subclass per receiver."""

    server_version = "teleport-sync"
    sys_version = ""
    timeout = 15  # seconds a client may take to send its request: no thread held forever
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
        return self.rfile.read(int(length))

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
