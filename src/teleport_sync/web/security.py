"""The console's guards, as one ASGI middleware, in the order a request meets them.

1. Host: the `Host` header must name the listen address or localhost. A page from another site
   whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding) carries its own name, and is refused.
2. Token: when `[web] token` is set, a request must carry it: once as `?token=` (which sets an
   HttpOnly cookie and redirects to the same page without it), then by that cookie, or as
   `Authorization: Bearer`. The cookie holds a digest of the token, never the token.
3. CSRF: every POST carries the console's CSRF token (a form field or `X-CSRF-Token`), which only
   pages served by the console know; an `Origin` header, when sent, must be this console.
Every answer also carries headers that keep it out of frames and other sites' scripts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "teleport_sync_console"
CSRF_FIELD = "csrf"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not "no-referrer": with it, browsers send `Origin: null` on the console's own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    # The 3D viewer sorts splats in a worker made from a blob and may use WebAssembly.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
        "connect-src 'self' blob: data:; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'"
    ),
}


@dataclass
class Guard:
    """What the guards compare against: the listen address, the token, the CSRF token."""

    host: str
    port: int
    token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        parts = urlsplit(f"//{header}")
        try:
            port = parts.port
        except ValueError:
            return False
        name = (parts.hostname or "").lower()
        if port is not None and port != self.port:
            return False
        if name in LOOPBACK_NAMES or name == self.host.lower():
            return True
        # A wildcard listen has no one name to compare with; the token (required off
        # loopback) is then what keeps strangers out.
        return self.host in ("0.0.0.0", "::") and self.token is not None

    def cookie_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"console-cookie", hashlib.sha256).hexdigest()

    def authenticated(self, headers: Headers) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(
            auth[7:].strip().encode(), self.token.encode()
        ):
            return True
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.value, self.cookie_value())

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())

    def origin_ok(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()


def local_path(target: str) -> str:
    """`target` when it is a path of this console, else "/": never another site's address
    (`//evil.example/` and `/\\evil.example/` are other hosts to a browser)."""
    if not target.startswith("/") or target[1:2] in ("/", "\\"):
        return "/"
    return target


class GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if key.encode() not in present:
                        headers.append((key.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if not self.guard.host_allowed(headers.get("host")):
            return PlainTextResponse(
                "refused: this console answers only to its own address or localhost\n", 421
            )
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self.guard.token is not None and "token" in query and scope["method"] == "GET":
            return self._login(scope, query)
        if not self.guard.authenticated(headers):
            return PlainTextResponse(
                "this console needs its token: open it once as /?token=TOKEN "
                "([web] token in the config)\n",
                401,
            )
        if scope["method"] not in ("GET", "HEAD") and not self.guard.origin_ok(headers):
            return PlainTextResponse("refused: a request from another site\n", 403)
        return None

    def _login(self, scope: Scope, query: dict[str, str]) -> Response:
        presented = query.pop("token")
        assert self.guard.token is not None
        if not hmac.compare_digest(presented.encode(), self.guard.token.encode()):
            return PlainTextResponse("wrong token\n", 401)
        # Drop the token from the address bar (and so from history and bookmarks).
        # Back to the page asked for, only ever on this console (no open redirect).
        target = local_path(scope["path"]) + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE, self.guard.cookie_value(), httponly=True, samesite="strict", path="/"
        )
        return response
