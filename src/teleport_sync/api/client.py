"""The Teleport API client: one typed method per endpoint (OAuth2 in `oauth.py`).

Two httpx clients share nothing but the transport settings: `api` carries the bearer token for
`/api/v1` and `/share`; `storage` never does, because presigned part URLs and CDN model URLs are
credentials of their own and must not receive our Authorization header.

Idempotent calls retry by `retry.RetryPolicy`. `create_capture` never retries on its own: a
retried create after a lost answer would duplicate the capture, so the engine reconciles first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pydantic

from ..models import (
    CaptureMetadata,
    CaptureOutput,
    CaptureUploadedInput,
    EditCaptureInput,
    NewCaptureInput,
    NewCaptureOutput,
    RecreateCaptureUploadUrls,
    UploadedPart,
    UploadUrlOutput,
)
from ..private import private_dirs, private_file
from ..retry import (
    Clock,
    Pacer,
    RetryPolicy,
    SystemClock,
)
from ..retry import call_with_retries as _call_with_retries
from .bounded import (
    BodyTooLong,
    DownloadBounds,
    ensure_space,
    refuse_announced,
    write_bounded,
)
from .errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    RequestRejected,
    TransientError,
    UploadUrlExpired,
    error_for,
    redact_url,
    server_message,
)
from .filebody import FileRegion
from .listing import CLOCK_SKEW_SECONDS, FULL_WALK_SECONDS, Listing, Walk
from .oauth import TOKEN_REFRESH_MARGIN, ClientCredentialsAuth
from .transport import USER_AGENT, LazyTLSTransport, PlainHTTPTransport

__all__ = [
    "TOKEN_REFRESH_MARGIN",
    "ApiError",
    "AuthenticationError",
    "ClientCredentialsAuth",
    "NotFoundError",
    "RequestRejected",
    "TeleportClient",
    "TransientError",
    "UploadUrlExpired",
    "account_of",
    "build_client",
    "default_transport",
    "error_for",
    "metadata_v2_json",
    "redact_url",
    "server_message",
]

T = TypeVar("T")


def default_transport(limits: httpx.Limits) -> httpx.BaseTransport:
    """Plain http by the standard library (sendfile for parts), https by httpx's pools."""
    return PlainHTTPTransport(
        LazyTLSTransport(limits), max_idle=limits.max_keepalive_connections or 16
    )


class TeleportClient:
    """Typed methods for every endpoint, plus part upload and model download."""

    def __init__(
        self,
        *,
        base_url: str,
        auth: httpx.Auth,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        storage_transport: httpx.BaseTransport | None = None,
        # Builds the pool for `api` and `storage` when no transport is given for them.
        pools: Callable[[httpx.Limits], httpx.BaseTransport] = default_transport,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        max_connections: int = 16,
        on_retry: Callable[[str, int, BaseException, float], None] | None = None,
        download_bounds: DownloadBounds | None = None,
        full_walk_seconds: float = FULL_WALK_SECONDS,
        clock_skew_seconds: float = CLOCK_SKEW_SECONDS,
    ) -> None:
        # How much one download may bring and what it leaves free (`bounded.py`).
        self.download_bounds = download_bounds or DownloadBounds()
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        headers = {"User-Agent": USER_AGENT}
        self.api = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=timeouts,
            transport=transport or pools(limits),
            headers=headers,
        )
        self.storage = httpx.Client(
            timeout=timeouts,
            transport=storage_transport or pools(limits),
            headers=headers,
        )
        self.policy = policy or RetryPolicy()
        self.clock = clock or SystemClock()
        # One pacer per remote, shared by every thread using this client: a Retry-After seen
        # by one call delays the next call of every thread (see retry.Pacer).
        self.pacer = Pacer(self.policy, self.clock)
        self.storage_pacer = Pacer(self.policy, self.clock)
        self._on_retry = on_retry
        # Every search of the account's listing goes through one `Listing`: one full-walk
        # budget and one memory of the captures looked for, whoever asks.
        self.listing = Listing(
            lambda limit, offset: self.list_captures(limit=limit, offset=offset),
            self.clock,
            full_walk_seconds=full_walk_seconds,
            clock_skew_seconds=clock_skew_seconds,
        )

    @property
    def base_url(self) -> str:
        """The API's base URL as httpx holds it (the key of the journal's per-API facts)."""
        return str(self.api.base_url)

    def close(self) -> None:
        self.api.close()
        self.storage.close()

    def access_token(self, *, force: bool = False) -> str | None:
        """A valid access token (a new one with `force`), or None when the client does not use
        OAuth2. For the authentication probe: API calls fetch tokens as they need them."""
        auth = self.api.auth
        if not isinstance(auth, ClientCredentialsAuth):
            return None
        return auth.token(lambda request: self.api.send(request, auth=None), force=force)

    def __enter__(self) -> TeleportClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    def _request_once(self, method: str, path: str, doing: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.api.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(f"{doing} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise error_for(response, doing)
        return response

    def _request(
        self, method: str, path: str, doing: str, *, retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        if not retry:
            # One attempt in the pacer's slot; its caller retries, and feeds failures itself.
            return self.pacer.once(lambda: self._request_once(method, path, doing, **kwargs))

        def report(attempt: int, exc: BaseException, delay: float) -> None:
            if self._on_retry is not None:
                self._on_retry(doing, attempt, exc, delay)

        return _call_with_retries(
            lambda: self._request_once(method, path, doing, **kwargs),
            policy=self.policy,
            clock=self.clock,
            on_retry=report,
            pacer=self.pacer,
        )

    def _reporter(self, doing: str) -> Callable[[int, BaseException, float], None]:
        def report(attempt: int, exc: BaseException, delay: float) -> None:
            if self._on_retry is not None:
                self._on_retry(doing, attempt, exc, delay)

        return report

    @staticmethod
    def _parse(model: type[T], response: httpx.Response, doing: str) -> T:
        try:
            return model.model_validate(response.json())  # type: ignore[attr-defined,no-any-return]
        except (ValueError, pydantic.ValidationError) as exc:
            raise ApiError(f"{doing}: the server's answer did not match the API: {exc}") from None

    # -- captures --------------------------------------------------------------------------

    def list_captures(self, *, limit: int = 25, offset: int = 0) -> list[CaptureOutput]:
        doing = "listing captures"
        response = self._request(
            "GET", "/api/v1/captures", doing, params={"limit": limit, "offset": offset}
        )
        items = _json_of(response, doing, list)
        try:
            return [CaptureOutput.model_validate(item) for item in items]
        except pydantic.ValidationError as exc:
            raise ApiError(f"{doing}: the server's answer did not match the API: {exc}") from None

    # Searches of the listing, each as short as it can be (see `api.listing`).

    def iter_captures(self, *, page_size: int | None = None) -> Iterator[CaptureOutput]:
        """Every capture of the account, each once: a full walk (`captures list`)."""
        return self.listing.every(page_size)

    def find_captures(self, eids: Iterable[str], *, sure: bool = False) -> Walk:
        return self.listing.find(set(eids), sure=sure)

    def search_captures(
        self, matches: Callable[[CaptureOutput], bool], *, since: datetime | None
    ) -> list[CaptureOutput]:
        return self.listing.search(matches, since=since)

    def find_capture(self, eid: str) -> CaptureOutput | None:
        """None: not in the account, as well as a walk of the listing can tell (`sure`)."""
        return self.listing.find({eid}, sure=True).found.get(eid)

    def create_capture(self, request: NewCaptureInput) -> NewCaptureOutput:
        doing = f"creating capture {request.name!r}"
        response = self._request(
            "POST",
            "/api/v1/captures",
            doing,
            retry=False,
            json=request.model_dump(mode="json", exclude_none=True),
        )
        return self._parse(NewCaptureOutput, response, doing)

    def create_upload_url(
        self, eid: str, part_no: int, bytesize: int, *, retry: bool = True
    ) -> UploadUrlOutput:
        """A part's upload URL. `retry=False` inside a part attempt: the part attempt is the
        retry unit there, so no retries nest inside it."""
        doing = f"requesting the upload URL of part {part_no} of capture {eid}"
        body = RecreateCaptureUploadUrls(eid=eid, bytesize=bytesize)
        response = self._request(
            "POST",
            f"/api/v1/captures/{eid}/create-upload-url/{part_no}",
            doing,
            retry=retry,
            json=body.model_dump(mode="json"),
        )
        return self._parse(UploadUrlOutput, response, doing)

    def complete_upload(self, eid: str, parts: Iterable[UploadedPart]) -> CaptureOutput:
        doing = f"completing the upload of capture {eid}"
        ordered = sorted(parts, key=lambda p: p.number)
        body = CaptureUploadedInput(eid=eid, parts=ordered)
        response = self._request(
            "POST", f"/api/v1/captures/{eid}/uploaded", doing, json=body.model_dump(mode="json")
        )
        return self._parse(CaptureOutput, response, doing)

    def rename_capture(self, eid: str, name: str) -> CaptureOutput:
        doing = f"renaming capture {eid}"
        body = EditCaptureInput(name=name)
        response = self._request("PUT", f"/api/v1/captures/{eid}", doing, json=body.model_dump())
        return self._parse(CaptureOutput, response, doing)

    def delete_capture(self, eid: str) -> None:
        self._request("DELETE", f"/api/v1/captures/{eid}", f"deleting capture {eid}")

    def metadata(
        self, sid: str, *, profiles: Iterable[str] = ("ply",), quality: str = "hd"
    ) -> CaptureMetadata:
        doing = f"reading the metadata of share {sid}"
        params: list[tuple[str, str]] = [("profiles", p) for p in profiles]
        params.append(("quality", quality))
        response = self._request("GET", f"/share/{sid}/metadata", doing, params=params)
        return self._parse(CaptureMetadata, response, doing)

    def metadata_json(
        self,
        sid: str,
        *,
        profiles: Iterable[str],
        quality: str = "hd",
        lod: bool | None = None,
        use_cdn: bool | None = None,
    ) -> dict[str, Any]:
        """The metadata as the server sent it: `results.read_models` reads either models shape."""
        doing = f"reading the metadata of share {sid}"
        params: list[tuple[str, str]] = [("profiles", p) for p in profiles]
        params.append(("quality", quality))
        for key, flag in (("lod", lod), ("use_cdn", use_cdn)):
            if flag is not None:
                params.append((key, "true" if flag else "false"))
        return self.get_json_object(f"/share/{sid}/metadata", doing, params)

    def get_json_object(self, path: str, doing: str, params: Any) -> dict[str, Any]:
        """GET an API path that answers one JSON object, kept whole (unknown fields too)."""
        response = self._request("GET", path, doing, params=params)
        return _json_object(response, doing)

    # -- storage (presigned and CDN URLs: no Authorization header) --------------------------

    def put_part(
        self, url: str, body: FileRegion | Iterable[bytes], length: int, *, doing: str
    ) -> str:
        """PUT one part's bytes with an explicit Content-Length; returns the ETag as sent.

        A `FileRegion` body may go out by sendfile (see `transport`); any other iterable is
        streamed. One attempt: the engine retries, because every attempt needs a fresh URL.
        """
        headers = {"Content-Length": str(length)}
        try:
            if isinstance(body, FileRegion):
                request = self.storage.build_request("PUT", url, headers=headers)
                request.stream = body  # not `content=`, which would wrap it in a plain iterator
                response = self.storage.send(request)
            else:
                response = self.storage.put(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TransientError(f"{doing} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise error_for(response, doing)
        etag = response.headers.get("ETag")
        if not etag:
            raise TransientError(f"{doing}: storage answered {response.status_code} with no ETag")
        return etag

    def download(self, url: str, destination: Path, *, expected_size: int | None = None) -> int:
        """Stream a file to `destination` via `<name>.part`, resuming it by HTTP Range.

        A `.part` left by a dropped connection (or a crash) is continued from its size; a
        server that ignores Range sends it all again. The file is checked against the size the
        metadata gave, flushed to disk and renamed in one step, so `destination` is whole or
        absent. Memory stays flat: 1 MiB blocks go straight to the file.
        """
        doing = f"downloading {redact_url(url)}"
        partial, origin = _claim_partial(url, destination, expected_size)
        have = partial.stat().st_size if partial.exists() else 0
        needed = max(0, (expected_size or 0) - have)
        ensure_space(self.download_bounds, partial.parent, url, needed)
        try:
            size = self._download_retried(url, partial, expected_size, doing)
        except BodyTooLong:
            partial.unlink(missing_ok=True)  # a misbehaving server's bytes: never resumed
            origin.unlink(missing_ok=True)
            raise
        _settle_partial(partial, destination, origin)
        return size

    def _download_retried(
        self, url: str, partial: Path, expected_size: int | None, doing: str
    ) -> int:
        bounds = self.download_bounds
        return _call_with_retries(
            lambda: _download_into(self.storage, url, partial, expected_size, doing, bounds),
            policy=self.policy,
            clock=self.clock,
            on_retry=self._reporter(doing),
            pacer=self.storage_pacer,
        )


def _claim_partial(url: str, destination: Path, expected_size: int | None) -> tuple[Path, Path]:
    """The `.part` for this download and its `.part.src`, which says what the `.part` holds
    (URL without its signature, and size): a `.part` of another file, e.g. the model of an
    earlier capture of a replaced input, is never continued."""
    private_dirs(destination.parent)  # [results] mode, if set, opens them up afterwards
    partial = destination.with_name(destination.name + ".part")
    origin = destination.with_name(destination.name + ".part.src")
    holds = f"{redact_url(url)} {expected_size}"
    if partial.exists() and (not origin.exists() or origin.read_text() != holds):
        partial.unlink()
    private_file(origin)
    origin.write_text(holds)
    return partial, origin


def _settle_partial(partial: Path, destination: Path, origin: Path) -> None:
    """Flush the whole `.part` to disk and rename it in one step: whole or absent."""
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    partial.replace(destination)
    _fsync_dir(destination.parent)
    origin.unlink(missing_ok=True)


def _json_object(response: httpx.Response, doing: str) -> dict[str, Any]:
    return _json_of(response, doing, dict)


def _json_of(response: httpx.Response, doing: str, kind: type[Any]) -> Any:
    """The answer's JSON, which must be a `kind` (list or dict); else an ApiError naming it."""
    try:
        body = response.json()
    except ValueError:
        raise ApiError(f"{doing}: the server's answer was not JSON") from None
    if not isinstance(body, kind):
        wanted = "array" if kind is list else "object"
        raise ApiError(f"{doing}: expected a JSON {wanted}, got {type(body).__name__}")
    return body


def account_of(client: TeleportClient) -> str:
    """Which account a client speaks for: the base URL and the client id (never the secret).
    What the journal's per-account facts are keyed by (metadata v2 or v1)."""
    auth = client.api.auth
    client_id = auth.client_id if isinstance(auth, ClientCredentialsAuth) else ""
    return f"{client.base_url} {client_id}".strip()


def metadata_v2_json(
    client: TeleportClient,
    resource_id: str,
    *,
    content_profile: str,
    crop_variant: str | None = None,
    coord_system: str | None = None,
) -> dict[str, Any]:
    """Capture Metadata v2 (NOTES "Metadata v2") as the server sent it, unknown fields kept:
    `resource_id` is the `sid`, or `{sid}-{segment}` for one segment. A 404/405 raises
    `NotFoundError`/`RequestRejected`, for the caller to fall back to v1."""
    doing = f"reading the v2 metadata of {resource_id} ({content_profile})"
    params = {"content_profile": content_profile}
    for key, value in (("crop_variant", crop_variant), ("coord_system", coord_system)):
        if value:
            params[key] = value
    return client.get_json_object(f"/api/v2/captures/{resource_id}/metadata", doing, params)


def _download_into(
    storage: httpx.Client,
    url: str,
    partial: Path,
    expected_size: int | None,
    doing: str,
    bounds: DownloadBounds,
) -> int:
    """One attempt: continue `partial` from its current size; returns its size at the end.
    The body is read within `bounds` (`bounded.write_bounded`): never past the size promised."""
    have = partial.stat().st_size if partial.exists() else 0
    if expected_size is not None and have > expected_size:
        have = 0  # not the file the metadata describes: start over
    if have and have == expected_size:
        return have
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        # CDN links may redirect; PUTs to presigned URLs never follow redirects.
        with storage.stream("GET", url, headers=headers, follow_redirects=True) as answer:
            if answer.status_code == 416:
                answer.read()
                partial.unlink(missing_ok=True)
                total = answer.headers.get("Content-Range", "").rpartition("/")[2] or "?"
                raise TransientError(
                    f"{doing}: cannot resume at {have} bytes, the server's file is {total} "
                    f"bytes and the metadata said {expected_size}; starting over"
                )
            if answer.status_code >= 300:
                answer.read()
                raise error_for(answer, doing)
            start = _resume_offset(answer, have)
            announced = answer.headers.get("Content-Length", "")
            length = int(announced) if announced.isdigit() else None
            refuse_announced(bounds, url, expected_size, start, length)
            if not partial.exists():
                private_file(partial)
            with partial.open("r+b") as out:
                out.seek(start)
                out.truncate()
                write_bounded(
                    answer.iter_bytes(1 << 20),
                    out,
                    bounds=bounds,
                    url=url,
                    expected_size=expected_size,
                    start=start,
                    folder=partial.parent,
                )
    except httpx.TransportError as exc:
        raise TransientError(
            f"{doing} failed: {type(exc).__name__}: {exc}; resuming from "
            f"{partial.stat().st_size if partial.exists() else 0} bytes"
        ) from None
    size = partial.stat().st_size
    if expected_size is not None and size != expected_size:
        raise TransientError(
            f"{doing}: have {size} bytes, the metadata said {expected_size}; resuming"
        )
    return size


def _resume_offset(answer: httpx.Response, have: int) -> int:
    """Where this answer's body goes in the file: `have` for our 206, 0 for a whole file."""
    if answer.status_code != 206:
        return 0
    content_range = answer.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-", content_range)
    if not match or int(match[1]) != have:
        raise TransientError(f"unexpected Content-Range {content_range!r} for bytes={have}-")
    return have


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def build_client(
    *,
    base_url: str,
    auth_url: str,
    client_id: str,
    client_secret: str,
    scope: str | None = None,
    timeout: float = 60.0,
    max_connections: int = 16,
    clock: Clock | None = None,
    policy: RetryPolicy | None = None,
    on_token: Callable[[str], None] | None = None,
    on_retry: Callable[[str, int, BaseException, float], None] | None = None,
    transport: Callable[[httpx.Limits], httpx.BaseTransport] = default_transport,
    download_bounds: DownloadBounds | None = None,
    full_walk_seconds: float = FULL_WALK_SECONDS,
    clock_skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> TeleportClient:
    """A client with real transports: the composition used by the CLI and the daemon.

    `transport` builds each pool; tests pass `LazyTLSTransport` to run plain http through
    httpcore, the path https always takes.
    """
    auth = ClientCredentialsAuth(
        token_url=auth_url,
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        clock=clock,
        on_token=on_token,
    )
    return TeleportClient(
        base_url=base_url,
        auth=auth,
        timeout=timeout,
        pools=transport,
        clock=clock,
        policy=policy,
        max_connections=max_connections,
        on_retry=on_retry,
        download_bounds=download_bounds,
        full_walk_seconds=full_walk_seconds,
        clock_skew_seconds=clock_skew_seconds,
    )
