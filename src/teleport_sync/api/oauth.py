"""OAuth2 client credentials as an httpx auth flow: the token requests ride the API client.

httpx's `sync_auth_flow` lets an `Auth` yield requests of its own before the one it signs: the
token request is yielded there, so it goes through the same client, transport, proxy settings
and timeouts as the API call that needed it, and tests inject one transport for both. The flow
holds a lock while it fetches, so threads sharing the client ask for one token between them.

`ClientCredentialsAuth.token(send)` runs the same exchange outside a request (the daemon's
authentication probe), with `send` doing the I/O.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass

import httpx
import pydantic

from ..models import TokenResponse
from ..retry import Clock, SystemClock
from .errors import (
    ApiError,
    AuthenticationError,
    TransientError,
    error_for,
    redact_url,
    server_message,
)
from .transport import USER_AGENT

# Refresh this long before the server's `expires_in` runs out, so no request carries a token
# that expires in flight. Short-lived tokens (tests) refresh at half their life instead.
TOKEN_REFRESH_MARGIN = 60.0

# What the exchange yields (token requests), is sent (their responses) and returns (the token).
TokenExchange = Generator[httpx.Request, httpx.Response, str]


@dataclass
class _Token:
    value: str
    refresh_at: float


class ClientCredentialsAuth(httpx.Auth):
    """Cached token, early refresh, one refresh-and-retry on a 401.

    JSON body as the Teleport docs show; form encoding as a fallback for servers that answer
    400/415 to JSON.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        clock: Clock | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._clock = clock or SystemClock()
        self._on_token = on_token
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.tokens_issued = 0

    # -- httpx's hooks ----------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The account's client id (public; the secret never leaves this object)."""
        return self._client_id

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = yield from self._valid_token(like=request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # The docs: "If you encounter a 401 Unauthorized ... request a new one." Once.
            token = yield from self._valid_token(like=request, stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # The lock is a thread lock: an async client would block its event loop on it.
        raise RuntimeError("ClientCredentialsAuth works with synchronous httpx clients only")
        yield request  # pragma: no cover (makes this an async generator, as httpx expects)

    # -- the exchange -----------------------------------------------------------------------

    def token(self, send: Callable[[httpx.Request], httpx.Response], *, force: bool = False) -> str:
        """A valid token, fetched through `send` if needed (or always, with `force`)."""
        exchange = self._valid_token(like=None, force=force)
        try:
            request = next(exchange)
            while True:
                try:
                    response = send(request)
                except httpx.TransportError as exc:
                    raise TransientError(
                        f"getting an access token from {redact_url(self._token_url)} failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                request = exchange.send(response)
        except StopIteration as done:
            return str(done.value)
        finally:
            exchange.close()

    def _valid_token(
        self, *, like: httpx.Request | None, stale: str | None = None, force: bool = False
    ) -> TokenExchange:
        """The cached token, or a new one. `stale` names the one a 401 refused: fetch a new one
        unless another thread already did. The lock is held across the token request (a
        generator closed by httpx on any error releases it)."""
        with self._lock:
            current = self._token
            needs_new = (
                force
                or current is None
                or self._clock.monotonic() >= current.refresh_at
                or (stale is not None and current.value == stale)
            )
            if needs_new:
                self._token = yield from self._fetch(like)
            assert self._token is not None
            return self._token.value

    def _fetch(
        self, like: httpx.Request | None
    ) -> Generator[httpx.Request, httpx.Response, _Token]:
        body: dict[str, str] = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        if self._scope:
            body["scope"] = self._scope
        response = yield self._token_request(like, json=body)
        response.read()
        if response.status_code in (400, 415) and "invalid_client" not in response.text:
            response = yield self._token_request(like, data=body)
            response.read()
        return self._accept(response)

    def _token_request(self, like: httpx.Request | None, **body: object) -> httpx.Request:
        # A request of our own, not a copy of `like`: it must carry no Authorization header.
        # It inherits the API call's timeouts (httpx reads them from the extensions).
        extensions = {}
        if like is not None and "timeout" in like.extensions:
            extensions["timeout"] = like.extensions["timeout"]
        return httpx.Request(
            "POST",
            self._token_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            extensions=extensions,
            **body,  # type: ignore[arg-type]
        )

    def _accept(self, response: httpx.Response) -> _Token:
        where = redact_url(self._token_url)
        if response.status_code in (400, 401, 403):
            said = server_message(response)
            raise AuthenticationError(
                f"authentication failed at {where}: HTTP {response.status_code}: {said}. "
                "Check [api] client_id and the client secret (from the Teleport Developer "
                "Dashboard)",
                status=response.status_code,
                server_message=said,
            )
        if response.status_code >= 300:
            raise error_for(response, f"getting an access token from {where}")
        try:
            token = TokenResponse.model_validate(response.json())
        except (ValueError, pydantic.ValidationError) as exc:
            raise ApiError(f"the token endpoint {where} sent no usable token: {exc}") from None
        if self._on_token is not None:
            self._on_token(token.access_token)
        self.tokens_issued += 1
        lifetime = float(token.expires_in)
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 2)
        return _Token(token.access_token, self._clock.monotonic() + lifetime - margin)
