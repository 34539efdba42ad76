"""The emulator's account: captures, tokens and the processing state machine.

States advance with time rather than with a background thread: a capture completed at `t`
reads as UPLOADED, then PROCESSING, then READY (or FAILED when its input is not valid) as
`processing_delay_seconds` elapses. The clock is injected.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .faults import EmulatorConfig
from .storage import S3Storage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".heic", ".webp", ".bmp", ".dng")
MAX_PARTS = 10_000


class EmulatorError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Capture:
    eid: str
    name: str
    bytesize: int
    input_data_format: str
    created: datetime
    upload_id: str
    chunk_size: int
    num_parts: int
    sid: str | None = None
    uploaded: datetime | None = None
    completed_at: float | None = None  # monotonic
    verdict: str | None = None  # None = valid; else an error_reason_slug
    verdict_text: str | None = None
    # As sent with `POST /captures`, for tests to check what reached the server.
    training_parameters: dict[str, Any] | None = None
    num_frames: int | None = None


@dataclass
class Backend:
    config: EmulatorConfig
    storage: S3Storage
    monotonic: Callable[[], float] = time.monotonic
    on_signature: Callable[[str], None] | None = None  # tests collect issued URL signatures
    on_completed: Callable[[Capture], None] | None = None  # the webhook sender
    captures: dict[str, Capture] = field(default_factory=dict)
    # Others' captures (`others_captures`) are older than this, the emulator's start.
    others_before: datetime = field(default_factory=lambda: datetime.now(UTC))
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- auth -------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, float]:
        if client_id != self.config.client_id or client_secret != self.config.client_secret:
            raise EmulatorError(401, "invalid_client")
        token = "emu_" + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = self.monotonic() + self.config.token_ttl_seconds
        return token, self.config.token_ttl_seconds

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self.tokens.get(token)
        return expiry is not None and self.monotonic() < expiry

    # -- captures ---------------------------------------------------------------------------

    def create(
        self,
        name: str,
        bytesize: int,
        input_data_format: str,
        training_parameters: dict[str, Any] | None = None,
        num_frames: int | None = None,
    ) -> Capture:
        if bytesize <= 0:
            raise EmulatorError(422, "bytesize must be a positive number of bytes")
        chunk = self.config.chunk_size
        num_parts = max(1, math.ceil(bytesize / chunk))
        if num_parts > MAX_PARTS:
            raise EmulatorError(422, f"a file of {bytesize} bytes needs more than 10000 parts")
        eid = secrets.token_hex(8)
        upload_id = self.storage.begin(eid)
        capture = Capture(
            eid=eid,
            name=name,
            bytesize=bytesize,
            input_data_format=input_data_format,
            created=self.server_now(),
            upload_id=upload_id,
            chunk_size=chunk,
            num_parts=num_parts,
            training_parameters=training_parameters,
            num_frames=num_frames,
        )
        with self._lock:
            self.captures[eid] = capture
        return capture

    def server_now(self) -> datetime:
        """The server's idea of now: true time plus the configured clock offset."""
        return datetime.now(UTC) + timedelta(seconds=self.config.clock_offset_seconds)

    def get(self, eid: str) -> Capture:
        with self._lock:
            capture = self.captures.get(eid)
        if capture is None:
            raise EmulatorError(404, f"capture {eid} not found")
        return capture

    def state_of(self, capture: Capture) -> str:
        if capture.completed_at is None:
            return "CREATED"
        elapsed = self.monotonic() - capture.completed_at
        delay = self.config.processing_delay_seconds
        if elapsed < delay * 0.3:
            return "UPLOADED"
        if capture.sid is None:
            capture.sid = secrets.token_hex(6)
        if elapsed < delay:
            return "PROCESSING"
        return "READY" if capture.verdict is None else self.config.failed_state_name

    def list(self) -> list[Capture]:
        with self._lock:
            # Newest first, as a live account lists them; clients must not rely on any order.
            # Ties (same timestamp) keep creation order reversed, so paging is stable.
            ordered = list(self.captures.values())
            ordered.reverse()
            return sorted(ordered, key=lambda c: c.created, reverse=True)

    def page(self, offset: int, limit: int) -> list[Capture]:
        """One page of the listing: this emulator's captures newest first, then the others'
        (`others_captures`), which are made up only for the page asked."""
        if limit <= 0:
            return []
        ours = self.list()
        page = ours[offset : offset + limit]
        first_other = max(0, offset - len(ours))
        wanted = limit - len(page)
        last_other = min(self.config.others_captures, first_other + wanted)
        page.extend(self._other(i) for i in range(first_other, last_other))
        return page

    def _other(self, index: int) -> Capture:
        """Others' capture number `index` (0 the newest): the same every time it is listed."""
        step = self.config.others_span_seconds / max(1, self.config.others_captures)
        offset = timedelta(seconds=self.config.clock_offset_seconds - step * (index + 1))
        return Capture(
            eid=f"other{index:011d}",
            name=f"someone else's capture {index}",
            bytesize=1,
            input_data_format="bulk-images",
            created=self.others_before + offset,
            upload_id="",
            chunk_size=self.config.chunk_size,
            num_parts=1,
            sid=f"othersid{index:08d}",
            completed_at=float("-inf"),
        )

    def upload_url(self, eid: str, part_no: int, bytesize: int) -> str:
        capture = self.get(eid)
        if capture.completed_at is not None:
            raise EmulatorError(400, f"capture {eid} is already uploaded")
        if not 1 <= part_no <= capture.num_parts:
            raise EmulatorError(
                400, f"part_no {part_no} is out of range 1..{capture.num_parts} for capture {eid}"
            )
        if bytesize != capture.bytesize:
            raise EmulatorError(
                400, f"bytesize {bytesize} differs from the capture's {capture.bytesize}"
            )
        url, signature = self.storage.presign_part(eid, capture.upload_id, part_no)
        if self.on_signature is not None:
            self.on_signature(signature)
        return url

    def complete(self, eid: str, parts: list[tuple[int, str]]) -> Capture:
        capture = self.get(eid)
        with self._lock:
            if capture.completed_at is not None:
                return capture  # idempotent: a retried completion changes nothing
            numbers = [n for n, _ in parts]
            if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
                raise EmulatorError(400, "InvalidPartOrder: parts must be in ascending order")
            if numbers != list(range(1, capture.num_parts + 1)):
                raise EmulatorError(
                    400, f"InvalidPart: expected parts 1..{capture.num_parts}, got {numbers}"
                )
            try:
                self.storage.complete(eid, capture.upload_id, parts)
            except Exception as exc:  # botocore ClientError carries S3's code and message
                raise EmulatorError(400, _client_error_text(exc)) from None
            size = self.storage.object_size(eid)
            if size != capture.bytesize:
                raise EmulatorError(
                    400, f"uploaded {size} bytes but the capture was created for {capture.bytesize}"
                )
            capture.verdict, capture.verdict_text = self._validate(capture)
            capture.uploaded = self.server_now()
            capture.completed_at = self.monotonic()
        if self.on_completed is not None:
            self.on_completed(capture)
        return capture

    def rename(self, eid: str, name: str) -> Capture:
        capture = self.get(eid)
        capture.name = name
        return capture

    def delete(self, eid: str) -> None:
        capture = self.get(eid)
        with self._lock:
            del self.captures[eid]
        try:
            if capture.completed_at is None:
                self.storage.abort(eid, capture.upload_id)
            else:
                self.storage.delete_object(eid)
        except Exception:  # storage clean-up is best effort, the capture is gone either way
            pass

    def by_sid(self, sid: str) -> Capture:
        with self._lock:
            for capture in self.captures.values():
                if capture.sid == sid:
                    return capture
        raise EmulatorError(404, f"share {sid} not found")

    # -- input validation (what the real service's processing would reject) ----------------

    def _validate(self, capture: Capture) -> tuple[str | None, str | None]:
        if self.config.fail_processing_with:
            return self.config.fail_processing_with, "processing failed (emulator knob)"
        if capture.input_data_format == "bulk-images":
            try:
                with zipfile.ZipFile(self.storage.open_object(capture.eid)) as archive:
                    names = archive.namelist()
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                return "invalid-archive", f"the file is not a readable zip archive: {exc}"
            if not any(n.lower().endswith(IMAGE_SUFFIXES) for n in names):
                return "no-images", "the zip archive contains no images"
            return None, None
        if capture.input_data_format == "video":
            head = self.storage.read_range(capture.eid, 0, 12)
            if len(head) < 12 or head[4:8] != b"ftyp":
                return "invalid-video", "the file is not an MP4 video (no ftyp box)"
            return None, None
        return None, None


def _client_error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return str(exc)
