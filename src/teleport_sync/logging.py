"""structlog setup: JSON lines for journald, a console renderer for people, and redaction.

`printable` escapes control characters (text from a server is data); `Redactor` applies it
to every string of every event after masking secrets.

The redactor runs last before rendering, on every event, including formatted exceptions, so no
code path can leak a client secret, a bearer token or a presigned-URL signature by accident.
Known secrets (the configured client secret, every issued access token) are registered with
`Redactor.add_secret` and masked wherever they appear; patterns catch the rest.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog

MASK = "***"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Presigned-URL query credentials, in any URL or message.
    re.compile(
        r"(?i)((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|"
        r"AWSAccessKeyId|sig|token|access_token|client_secret)=)[^&\s\"'<>]+"
    ),
    # Authorization headers and bearer tokens.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    # JSON bodies that carry secrets.
    re.compile(r"(?i)([\"'](?:client_secret|access_token|refresh_token)[\"']\s*:\s*[\"'])[^\"']*"),
)

# Characters a terminal acts on instead of showing: C0 controls (ESC starts CSI/OSC sequences
# that clear the screen or set the title, BEL rings, CR/LF forge lines), DEL, C1 controls (a
# one-byte CSI), and the bidirectional overrides that reorder what is shown.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_NEWLINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`, `\\u202e`):
    text from a server (capture names, states, error messages) is data, and never moves a
    cursor, clears a screen, sets a title or forges a line on a terminal, in a log or in the
    journal. `keep_newlines` for text of ours that has lines (a traceback)."""
    pattern = _CONTROLS_BUT_NEWLINES if keep_newlines else _CONTROLS
    return pattern.sub(_escape, text) if pattern.search(text) else text


_SECRET_KEYS = frozenset(
    {"client_secret", "access_token", "token", "authorization", "password", "secret"}
)


class Redactor:
    """A structlog processor that masks secrets in every string of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = {s for s in secrets if s}

    def add_secret(self, secret: str | None, *, min_length: int = 6) -> None:
        # Very short values would mask ordinary words; issued tokens are long. The configured
        # client secret is masked from 4 characters on (min_length=4): it is known to be secret,
        # and a shorter one would garble every log line (a 1-letter secret masks that letter).
        if secret and len(secret) >= min_length:
            # Also as it appears inside JSON text (a stored fact, an echoed request body).
            quoted = json.dumps(secret)[1:-1]
            with self._lock:
                self._secrets.update({secret, quoted})

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def _clean(self, value: Any, key: str | None = None) -> Any:
        if key is not None and key.lower() in _SECRET_KEYS and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            # A traceback keeps its lines; every other string becomes one line of text.
            return printable(self.redact(value), keep_newlines=key == "exception")
        if isinstance(value, dict):
            return {k: self._clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, BaseException):
            return printable(self.redact(repr(value)))
        return value

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {k: self._clean(v, k) for k, v in event.items()}


# One process-wide redactor: the API client registers tokens with it as they are issued.
REDACTOR = Redactor()


def redact_url(url: object) -> str:
    """The URL without its query string: presigned signatures live there."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def storable_url(url: str | None) -> str | None:
    """A URL fit for the journal: without its query when that carries a signature or token."""
    if not url:
        return None
    return url if REDACTOR.redact(url) == url else redact_url(url)


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib root logger, for third-party libraries)."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    numeric_level = logging.getLevelName(level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # httpx logs every request URL at INFO, presigned signatures included: keep it quiet.
    for noisy in ("httpx", "httpcore", "urllib3", "botocore", "werkzeug", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
