"""The OAuth2 flow over httpx.MockTransport: token requests ride the API client's own transport."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from teleport_sync.api import (
    AuthenticationError,
    ClientCredentialsAuth,
    TeleportClient,
    TransientError,
)
from teleport_sync.retry import RetryPolicy

from .conftest import FakeClock

TOKEN_URL = "https://auth.test/oauth2/token"


class FakeTeleport:
    """A token endpoint and `GET /api/v1/captures`, recording every request it sees."""

    def __init__(self, *, lifetime: int = 3600) -> None:
        self.lifetime = lifetime
        self.requests: list[httpx.Request] = []
        self.issued: list[str] = []
        self.refuse_tokens: set[str] = set()
        self.token_failure: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if request.url == TOKEN_URL:
                if self.token_failure is not None:
                    raise self.token_failure
                body = json.loads(request.content)
                if body["client_secret"] != "secret":
                    return httpx.Response(401, json={"error": "invalid_client"})
                token = f"tok-{len(self.issued) + 1:06d}"
                self.issued.append(token)
                return httpx.Response(200, json={"access_token": token, "expires_in": 3600})
            used = request.headers.get("authorization", "").removeprefix("Bearer ")
            if used not in self.issued or used in self.refuse_tokens:
                return httpx.Response(401, json={"detail": "token expired"})
            return httpx.Response(200, json=[])

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url == TOKEN_URL]


def client_for(fake: FakeTeleport, clock: FakeClock, secret: str = "secret") -> TeleportClient:
    auth = ClientCredentialsAuth(
        token_url=TOKEN_URL, client_id="id", client_secret=secret, clock=clock
    )
    return TeleportClient(
        base_url="https://api.test",
        auth=auth,
        transport=httpx.MockTransport(fake),
        clock=clock,
        timeout=7.0,
        policy=RetryPolicy(max_attempts=2, base_delay=1, max_delay=1),
    )


def test_the_token_request_goes_through_the_api_client_without_a_bearer() -> None:
    fake = FakeTeleport()
    with client_for(fake, FakeClock()) as client:
        assert client.list_captures() == []
        assert client.list_captures() == []
    token_request, first, second = fake.requests
    assert token_request.url == TOKEN_URL
    assert "authorization" not in token_request.headers
    assert json.loads(token_request.content)["grant_type"] == "client_credentials"
    assert token_request.headers["user-agent"] == "teleport-sync"
    # It inherits the API call's timeouts rather than waiting forever.
    assert token_request.extensions["timeout"]["read"] == 7.0
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer tok-000001"


def test_a_refused_token_is_replaced_once_and_the_call_retried() -> None:
    fake = FakeTeleport()
    with client_for(fake, FakeClock()) as client:
        client.list_captures()
        fake.refuse_tokens.add("tok-000001")
        assert client.list_captures() == []
    assert fake.issued == ["tok-000001", "tok-000002"]
    assert [r.headers.get("authorization") for r in fake.requests[-2:]] == [
        None,
        "Bearer tok-000002",
    ]


def test_threads_sharing_a_client_fetch_one_token_between_them() -> None:
    fake = FakeTeleport()
    with client_for(fake, FakeClock()) as client:
        threads = [threading.Thread(target=client.list_captures) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert fake.issued == ["tok-000001"]
    assert len(fake.requests) == 9


def test_the_token_is_refreshed_before_it_expires() -> None:
    fake, clock = FakeTeleport(), FakeClock()
    with client_for(fake, clock) as client:
        client.list_captures()
        clock.now += 3600 - 61  # inside the refresh margin of the token's life
        client.list_captures()
        clock.now += 58
        client.list_captures()
    assert fake.issued == ["tok-000001", "tok-000002"]


def test_the_probe_forces_a_new_token_through_the_same_transport() -> None:
    fake = FakeTeleport()
    with client_for(fake, FakeClock()) as client:
        assert client.access_token() == "tok-000001"
        assert client.access_token() == "tok-000001"
        assert client.access_token(force=True) == "tok-000002"
    assert len(fake.token_requests()) == 2
    assert all("authorization" not in r.headers for r in fake.requests)


def test_a_wrong_secret_is_an_authentication_error_naming_the_fix() -> None:
    fake = FakeTeleport()
    with client_for(fake, FakeClock(), secret="wrong") as client:
        with pytest.raises(AuthenticationError, match=r"Check \[api\] client_id") as caught:
            client.list_captures()
        with pytest.raises(AuthenticationError):
            client.access_token()
    assert caught.value.status == 401
    assert "wrong" not in str(caught.value)
    # No API call was made without a token.
    assert all(r.url == TOKEN_URL for r in fake.requests)


def test_an_unreachable_token_endpoint_is_transient_and_leaves_the_lock_free() -> None:
    fake, clock = FakeTeleport(), FakeClock()
    fake.token_failure = httpx.ConnectError("connection refused")
    with client_for(fake, clock) as client:
        with pytest.raises(TransientError, match="getting an access token from"):
            client.access_token()
        with pytest.raises(TransientError, match="listing captures failed: ConnectError"):
            client.list_captures()
        fake.token_failure = None
        # A failed fetch inside httpx's flow must not leave the token lock held.
        assert client.list_captures() == []
    assert fake.issued == ["tok-000001"]
