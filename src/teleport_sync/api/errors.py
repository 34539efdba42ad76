"""The API's errors, typed by what a caller should do about them, and what the server said.

Kept apart from the client so the OAuth2 flow (`oauth.py`) and the client (`api.py`) can both
raise them; `api` re-exports every name here. `redact_url` lives with the other redaction
(`logging`) and is handed on from here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import httpx
import pydantic

from ..logging import redact_url
from ..models import HTTPValidationError
from ..retry import RETRYABLE_STATUS, RetryableError, parse_retry_after

__all__ = ["redact_url"]  # re-exported: the API's callers strip signed queries with it


class ApiError(Exception):
    """An error from the API or storage, with what we were doing and what the server said."""

    def __init__(
        self, message: str, *, status: int | None = None, server_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class TransientError(ApiError, RetryableError):
    """Worth retrying: 429, 5xx, timeouts, connection resets."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        ApiError.__init__(self, message, status=status, server_message=server_message)
        self.retry_after = retry_after


class AuthenticationError(ApiError):
    """The token endpoint refused our client credentials, or the API refused every token."""


class NotFoundError(ApiError):
    pass


class RequestRejected(ApiError):
    """A 4xx that retrying will not fix (422 validation, 403 plan limits, ...)."""


class UploadUrlExpired(ApiError):
    """S3 answered 403 `Request has expired`: ask for a fresh URL and send the part again."""


def server_message(response: httpx.Response) -> str:
    """What the server said, readably: 422 `detail` lists, S3 XML `<Code>: <Message>`, or text."""
    text = response.text.strip() if response.content else ""
    if not text:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if text.startswith("<"):
        try:
            root = ET.fromstring(text)
            code = root.findtext("Code") or ""
            message = root.findtext("Message") or ""
            return f"{code}: {message}".strip(": ") or text[:300]
        except ET.ParseError:
            return text[:300]
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(body, dict) and "detail" in body:
        try:
            return HTTPValidationError.model_validate(body).render()
        except pydantic.ValidationError:
            return str(body["detail"])[:300]
    if isinstance(body, dict):
        for key in ("error_description", "message", "error"):
            if body.get(key):
                return str(body[key])
    return text[:300]


def error_for(response: httpx.Response, doing: str) -> ApiError:
    """The typed error for a non-2xx response."""
    status = response.status_code
    said = server_message(response)
    message = f"{doing} failed: HTTP {status}: {said}"
    if status in RETRYABLE_STATUS or (status == 400 and "RequestTimeout" in said):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return TransientError(message, status=status, server_message=said, retry_after=retry_after)
    if status == 403 and "expired" in said.lower():
        return UploadUrlExpired(message, status=status, server_message=said)
    if status == 401:
        return AuthenticationError(message, status=status, server_message=said)
    if status == 404:
        return NotFoundError(message, status=status, server_message=said)
    return RequestRejected(message, status=status, server_message=said)
