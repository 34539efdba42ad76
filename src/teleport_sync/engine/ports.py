"""What the engine needs from a Teleport client, and nothing more.

`api.TeleportClient` is the HTTP implementation (OAuth2, retries, presigned PUTs); the engine's
steps see it only through this protocol, so they can be read (and faked) without the HTTP
plumbing. The unit tests in `tests/test_engine_steps.py` and `tests/test_engine_parts.py` drive
the real HTTP client over `httpx.MockTransport`; `tests/test_engine.py` drives it against the
emulator over loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..api.filebody import FileRegion
from ..journal import FileRecord
from ..models import CaptureOutput, NewCaptureInput, NewCaptureOutput, UploadedPart, UploadUrlOutput
from ..retry import Pacer


@runtime_checkable
class TeleportClient(Protocol):
    """The calls the engine's steps make, and the pacers they wait on.

    Errors are `api.ApiError` and its subclasses: `TransientError` (worth another attempt),
    `NotFoundError` (the capture is gone), `UploadUrlExpired`, `AuthenticationError`,
    `RequestRejected`. Only `create_capture` must never retry on its own (see `create.py`).
    """

    @property
    def base_url(self) -> str:
        """The API's base URL: what the journal's per-API facts are keyed by."""
        ...

    @property
    def pacer(self) -> Pacer:
        """The API's pacer, shared by every thread calling it."""
        ...

    @property
    def storage_pacer(self) -> Pacer:
        """Storage's pacer (presigned part PUTs), shared likewise."""
        ...

    def create_capture(self, request: NewCaptureInput) -> NewCaptureOutput: ...

    def iter_captures(self) -> Iterator[CaptureOutput]: ...

    def find_capture(self, eid: str) -> CaptureOutput | None: ...

    def search_captures(
        self, matches: Callable[[CaptureOutput], bool], *, since: datetime | None
    ) -> list[CaptureOutput]:
        """Captures that `matches`, made after `since` (a bounded walk of the listing)."""
        ...

    def create_upload_url(
        self, eid: str, part_no: int, bytesize: int, *, retry: bool = True
    ) -> UploadUrlOutput: ...

    def put_part(self, url: str, body: FileRegion, length: int, *, doing: str) -> str:
        """One PUT of one part to its presigned URL; the ETag as storage sent it."""
        ...

    def complete_upload(self, eid: str, parts: Iterable[UploadedPart]) -> CaptureOutput: ...

    def rename_capture(self, eid: str, name: str) -> CaptureOutput: ...

    def delete_capture(self, eid: str) -> None: ...


class Sources(Protocol):
    """Where the bytes of an input come from. Almost always the file itself; a QuickTime .mov
    is sent as its remux to MP4 (`inputs.remux.Remuxes`), made before its capture."""

    def source_for(self, record: FileRecord) -> Path:
        """The file whose bytes are sent for `record` (made now if needed); raises
        InputProblem when there can be none."""

    def done(self, record: FileRecord) -> None:
        """`record` is uploaded: anything made for it can go."""


class SameFile:
    """Every input is sent as it is."""

    def source_for(self, record: FileRecord) -> Path:
        return Path(record.path)

    def done(self, record: FileRecord) -> None:
        return None


@runtime_checkable
class CompletionGate(Protocol):
    """What completion (`POST /uploaded`, the paid step) waits for: the pose check, which runs
    beside the parts (`preflight.pose.beside.PoseBeside` is the daemon's)."""

    def applies(self, record: Any) -> bool:
        """Does completion of this file wait for anything (is its check on)?"""
        ...

    def start(self, record: Any) -> None:
        """The upload of this file version begins: start its check, unless it has a verdict."""
        ...

    def wait(self, record: Any) -> str | None:
        """Block until the version's verdict; the sentence why completion must wait for
        `approve` when it holds, else None."""
        ...
