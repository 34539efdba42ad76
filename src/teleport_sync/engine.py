"""Upload one file, exactly once, resumably: plan, create, stream parts, complete, reconcile.

The journal is consulted before and written after every step that the server acknowledges:
- intent before `POST /captures`; eid, chunk size and part count in one transaction after it;
- after a crash in the orphan window (intent, no eid) the account's captures are listed and a
  matching `CREATED` capture is adopted (extras deleted) instead of creating another;
- one transaction per acknowledged part; on resume only parts without an ETag are sent;
- a completion whose answer is lost is reconciled by reading the capture's state.

Parts are sent as `FileRegion`s: by sendfile over plain http, in `block_size` blocks otherwise,
so memory does not grow with part size. Each part's MD5 is computed once and checked against
MD5-shaped ETags: in a hashing thread beside the sending once storage is known to answer with
MD5s, after the PUT while that is not yet known, never for storage whose ETags are not MD5s
(nothing could check it). Each attempt gets a fresh presigned URL.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .api import (
    ApiError,
    NotFoundError,
    RequestRejected,
    TeleportClient,
    TransientError,
    UploadUrlExpired,
)
from .filebody import BLOCK_SIZE, FileRegion, md5_of_region
from .inputs import InputProblem, capture_name, identify, input_format_for
from .journal import FileRecord, Journal
from .logging import get_logger
from .models import FileIdentity, NewCaptureInput, UploadedPart, awaiting_upload
from .prefetch import Prefetcher
from .retry import Clock, RetryPolicy, SystemClock

MAX_PARTS = 10_000
# Server and local clocks differ; a capture created this long before our intent still counts
# as ours when reconciling the orphan window.
CLOCK_SKEW = timedelta(minutes=2)
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")

log = get_logger("teleport_sync.engine")


@dataclass
class _FileRun:
    """What the part threads of one file's upload share."""

    path: Path
    record: FileRecord
    bytesize: int
    abort: threading.Event
    hashers: ThreadPoolExecutor
    urls: Prefetcher[int, str]
    # Set when an ETag shows storage no longer answers with MD5s: hashes still running stop.
    stop_hashing: threading.Event = field(default_factory=threading.Event)


class UploadFailed(Exception):
    """This attempt failed; the file stays in the journal and can be retried later."""


class FileChanged(UploadFailed):
    """The file changed while it was being uploaded; its capture was abandoned."""


class Stopped(UploadFailed):
    """Asked to stop (SIGTERM): acknowledged parts are journaled, the rest resumes later."""


class Paused(Stopped):
    """The gate said no new part may start (paused, upload window closed); resumes later."""


@dataclass(frozen=True)
class PartPlan:
    number: int
    offset: int
    size: int


def plan_parts(bytesize: int, chunk_size: int, num_parts: int) -> list[PartPlan]:
    """Byte ranges of each part; refuses a plan that does not cover the file exactly."""
    if chunk_size <= 0:
        raise UploadFailed(f"the server chose a chunk size of {chunk_size} bytes")
    needed = max(1, math.ceil(bytesize / chunk_size))
    if num_parts != needed:
        raise UploadFailed(
            f"the server's plan ({num_parts} parts of {chunk_size} bytes) does not cover "
            f"{bytesize} bytes, which need {needed} parts"
        )
    if num_parts > MAX_PARTS:
        raise UploadFailed(
            f"{bytesize} bytes in parts of {chunk_size} bytes would be {num_parts} parts; "
            f"S3 allows at most {MAX_PARTS}"
        )
    return [
        PartPlan(n, (n - 1) * chunk_size, min(chunk_size, bytesize - (n - 1) * chunk_size))
        for n in range(1, num_parts + 1)
    ]


class Progress(Protocol):
    """What the engine reports while it works; the CLI draws bars, the daemon counts metrics."""

    def started(
        self, path: Path, total: int, done: int, num_parts: int, parts_done: int
    ) -> None: ...

    def advanced(self, path: Path, nbytes: int) -> None: ...

    def part_done(self, path: Path, number: int) -> None: ...


class NoProgress:
    def started(self, path: Path, total: int, done: int, num_parts: int, parts_done: int) -> None:
        pass

    def advanced(self, path: Path, nbytes: int) -> None:
        pass

    def part_done(self, path: Path, number: int) -> None:
        pass


@dataclass(frozen=True)
class UploadResult:
    path: Path
    file_id: int
    eid: str
    already_uploaded: bool
    parts_sent: int
    capture_state: str | None


class Uploader:
    """Uploads files through one client and one journal. Thread-safe across files."""

    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        *,
        concurrency: int = 4,
        name_template: str = "{name}",
        training_parameters: dict[str, Any] | None = None,
        part_policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        block_size: int = BLOCK_SIZE,
        on_retry: Callable[[str], None] | None = None,
        gate: Callable[[Path], str | None] | None = None,
        throttle: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        # Asked before each new part: None, or why no part may start now (pause, closed window).
        self.gate = gate or (lambda path: None)
        # Called before each block or sendfile slice goes out: the shared bandwidth limiter.
        self.throttle = throttle
        self.on_retry = on_retry or (lambda what: None)
        self.journal = journal
        self.concurrency = concurrency
        self.name_template = name_template
        self.training_parameters = training_parameters
        self.part_policy = part_policy or RetryPolicy(max_attempts=10)
        self.clock = clock or SystemClock()
        self.progress: Progress = progress or NoProgress()
        self.stop = stop or threading.Event()
        self.block_size = block_size
        # Does storage answer with MD5 ETags? Unknown until the first part is acknowledged. When
        # it does not (SSE-KMS buckets, some S3-compatible stores), hashing could never be
        # checked, so it is skipped: MD5 costs a core at ~500 MB/s.
        # Remembered across runs (per API base URL), so a CLI upload does not re-learn it.
        self._etag_fact = f"storage-etags-are-md5 {client.api.base_url}"
        remembered = journal.fact(self._etag_fact)
        self.etags_are_md5: bool | None = None if remembered is None else remembered == "yes"
        # Files whose create was ambiguous (timed out, adopted): a late duplicate may still
        # appear on the server, so their siblings are swept once more at completion.
        self._sweep_at_completion: set[int] = set()

    # -- the whole file -------------------------------------------------------------------------

    def upload(self, path: Path, *, force: bool = False) -> UploadResult:
        """Upload `path` (or resume it); raises InputProblem, UploadFailed or its subclasses."""
        path = path.absolute()
        fmt = input_format_for(path)
        identity = identify(path)
        name = capture_name(self.name_template, path)
        record = self.journal.register(str(path), identity, fmt.value, name)

        if record.identity != identity or force:
            why = "forced" if force else "the file changed since it was journaled"
            record = self._start_over(record, identity, fmt.value, name, why)
        elif record.upload_state == "uploaded" and record.eid:
            return UploadResult(path, record.id, record.eid, True, 0, record.capture_state)

        try:
            return self._upload(path, record, identity)
        except InputProblem as exc:
            # Raised mid-upload when the file vanished or became unreadable.
            self.journal.mark_failed(record.id, str(exc))
            raise
        except UploadFailed as exc:
            if not isinstance(exc, Stopped):
                self.journal.mark_failed(record.id, str(exc))
            raise

    def _start_over(
        self, record: FileRecord, identity: FileIdentity, fmt: str, name: str, why: str
    ) -> FileRecord:
        if record.eid and record.upload_state != "uploaded":
            # An unfinished capture of an old version is useless to anyone: delete it.
            self._delete_quietly(record.eid, f"abandoned: {why}")
            why = f"{why}; capture {record.eid} deleted"
        elif record.eid:
            why = f"{why}; capture {record.eid} of the previous version is kept"
        log.info("starting over", path=record.path, reason=why)
        return self.journal.restart(record.id, identity, fmt, name, why)

    def _upload(self, path: Path, record: FileRecord, identity: FileIdentity) -> UploadResult:
        self._check_stop()
        self._check_gate(path)
        if record.eid is None:
            record = self._ensure_capture(record)
        assert record.eid and record.chunk_size and record.num_parts
        self.journal.mark_uploading(record.id)
        plan = plan_parts(identity.size, record.chunk_size, record.num_parts)
        acknowledged = self.journal.parts(record.id)
        todo = [p for p in plan if p.number not in acknowledged]
        done_bytes = sum(p.size for p in plan if p.number in acknowledged)
        self.progress.started(path, identity.size, done_bytes, len(plan), len(acknowledged))
        log.info(
            "uploading",
            path=str(path),
            eid=record.eid,
            parts=len(plan),
            resuming_from=len(acknowledged),
        )
        try:
            self._send_parts(path, record, todo, identity.size)
        except NotFoundError as exc:
            # The capture is gone (deleted in the web UI?): the next attempt starts afresh.
            self.journal.restart(
                record.id, identity, record.input_data_format, record.name, f"{exc}"
            )
            raise UploadFailed(f"{path}: capture {record.eid} vanished; will start over") from exc

        if identify(path) != identity:
            self._delete_quietly(record.eid, "file changed during upload")
            self.journal.restart(
                record.id,
                identify(path),
                record.input_data_format,
                record.name,
                "the file changed during upload",
            )
            raise FileChanged(
                f"{path} changed while it was being uploaded; its capture was deleted and the "
                "file will be uploaded again once it is complete"
            )
        if record.id in self._sweep_at_completion:
            self._sweep_duplicates(record)
            self._sweep_at_completion.discard(record.id)
        state, sid = self._complete(path, record, len(plan))
        self.journal.record_state(record.id, state, sid)
        self.journal.mark_uploaded(record.id)
        log.info("uploaded", path=str(path), eid=record.eid, state=state)
        return UploadResult(path, record.id, record.eid, False, len(todo), state)

    # -- create, with the orphan window reconciled ------------------------------------------

    def _ensure_capture(self, record: FileRecord) -> FileRecord:
        # A previous run meant to create a capture and may have, without journaling it.
        if record.intent_at is not None and self._adopt_orphan(record, record.intent_at):
            return self.journal.get(record.id)
        intent_at = self.journal.mark_create_intent(record.id)
        request = NewCaptureInput(
            name=record.name,
            bytesize=record.identity.size,
            input_data_format=record.input_data_format,
            training_parameters=self.training_parameters,
        )
        attempt = 0
        while True:
            self._check_stop()
            try:
                created = self.client.create_capture(request)
                break
            except TransientError as exc:
                self._sweep_at_completion.add(record.id)
                attempt += 1
                if attempt >= self.part_policy.max_attempts:
                    raise UploadFailed(f"{record.path}: {exc}") from exc
                self.clock.sleep(self.part_policy.backoff(attempt - 1, exc.retry_after))
                # The failed create may have happened on the server after all.
                if self._adopt_orphan(record, intent_at):
                    return self.journal.get(record.id)
            except ApiError as exc:
                raise UploadFailed(f"{record.path}: {exc}") from exc
        self.journal.record_created(record.id, created.eid, created.chunk_size, created.num_parts)
        log.info("capture created", path=record.path, eid=created.eid, parts=created.num_parts)
        if record.id in self._sweep_at_completion:
            self._sweep_duplicates(self.journal.get(record.id))
        return self.journal.get(record.id)

    def _sweep_duplicates(self, record: FileRecord) -> None:
        """Delete captures a timed-out create made late: same name, CREATED, not journaled."""
        if record.intent_at is None or record.eid is None:
            return
        since = datetime.fromisoformat(record.intent_at) - CLOCK_SKEW
        ours = self.journal.known_eids()
        try:
            extras = [
                c.eid
                for c in self.client.iter_captures()
                if c.name == record.name
                and awaiting_upload(c.state)
                and c.created >= since
                and c.eid not in ours
            ]
        except ApiError as exc:
            log.warning("could not check for duplicate captures", path=record.path, error=str(exc))
            return
        for eid in extras:
            self._delete_quietly(eid, "duplicate made by a create that timed out")
            self.journal.add_event(record.id, "deleted-duplicate", eid)

    def abandon(self, record: FileRecord, why: str) -> None:
        """The input is gone: delete its unfinished capture and say why in the journal."""
        if record.eid and record.upload_state != "uploaded":
            self._delete_quietly(record.eid, why)
        self.journal.restart(record.id, record.identity, record.input_data_format, record.name, why)
        # Not retried: there is nothing to retry until a file appears at this path again.
        self.journal.mark_rejected(record.id, why)

    def _adopt_orphan(self, record: FileRecord, intent_at: str) -> bool:
        since = datetime.fromisoformat(intent_at) - CLOCK_SKEW
        ours = self.journal.known_eids()
        try:
            candidates = sorted(
                (
                    c
                    for c in self.client.iter_captures()
                    if c.name == record.name
                    and awaiting_upload(c.state)
                    and c.created >= since
                    and c.eid not in ours
                ),
                key=lambda c: c.created,
            )
        except ApiError as exc:
            raise UploadFailed(
                f"{record.path}: cannot check for a capture created before a crash: {exc}"
            ) from exc
        if not candidates:
            return False
        keep, extras = candidates[0], candidates[1:]
        for extra in extras:
            self._delete_quietly(extra.eid, "duplicate created in the orphan window")
            self.journal.add_event(record.id, "deleted-duplicate", extra.eid)
        try:
            # The listing has no chunk size; asking for part 1's URL tells it.
            chunk_size = self.client.create_upload_url(keep.eid, 1, record.identity.size).chunk_size
        except ApiError as exc:
            raise UploadFailed(f"{record.path}: cannot adopt capture {keep.eid}: {exc}") from exc
        num_parts = max(1, math.ceil(record.identity.size / chunk_size))
        self.journal.record_created(record.id, keep.eid, chunk_size, num_parts)
        self.journal.add_event(record.id, "adopted", f"capture {keep.eid} from the orphan window")
        self._sweep_at_completion.add(record.id)
        log.warning("adopted capture created before a crash", path=record.path, eid=keep.eid)
        return True

    def _delete_quietly(self, eid: str, why: str) -> None:
        try:
            self.client.delete_capture(eid)
            log.info("deleted capture", eid=eid, reason=why)
        except NotFoundError:
            pass
        except ApiError as exc:
            log.warning("could not delete capture", eid=eid, reason=why, error=str(exc))

    # -- parts ---------------------------------------------------------------------------------

    def _send_parts(
        self, path: Path, record: FileRecord, todo: list[PartPlan], bytesize: int
    ) -> None:
        if not todo:
            return
        assert record.eid
        eid = record.eid
        workers = min(self.concurrency, len(todo))
        # Hashing has its own threads so it runs beside the sending, not before it; part URLs
        # are asked for one round ahead so no PUT waits for its URL.
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="part") as pool,
            ThreadPoolExecutor(workers, thread_name_prefix="md5") as hashers,
            ThreadPoolExecutor(workers, thread_name_prefix="url") as url_pool,
        ):
            urls = Prefetcher(
                lambda number: self.client.create_upload_url(eid, number, bytesize).upload_url,
                [part.number for part in todo],
                ahead=workers,
                executor=url_pool,
            )
            run = _FileRun(path, record, bytesize, threading.Event(), hashers, urls)
            futures: list[Future[None]] = [pool.submit(self._send_part, run, part) for part in todo]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failures = [f.exception() for f in finished if f.exception() is not None]
            if failures:
                run.abort.set()  # parts not yet started are skipped; those in flight finish
                urls.cancel()
                for future in futures:
                    future.cancel()
        if failures:
            first = failures[0]
            assert first is not None
            raise first

    def _send_part(self, run: _FileRun, part: PartPlan) -> None:
        path, record, bytesize = run.path, run.record, run.bytesize
        assert record.eid and record.num_parts
        label = f"part {part.number}/{record.num_parts} of {path.name}"
        # The part's MD5, computed once for all attempts: beside the sending when storage is
        # known to answer with MD5 ETags; otherwise only if the ETag turns out MD5-shaped (the
        # first parts of a first upload), so storage that cannot check it costs no hashing.
        hashing: Future[str] | None = None
        attempt = 0
        while True:
            if run.abort.is_set():
                return
            self._check_stop()
            self._check_gate(path)
            attempt += 1
            if hashing is None and self.etags_are_md5 is True:
                hashing = run.hashers.submit(
                    md5_of_region,
                    path,
                    part.offset,
                    part.size,
                    block_size=self.block_size,
                    stop=run.stop_hashing,
                )
            body = FileRegion(
                path,
                part.offset,
                part.size,
                block_size=self.block_size,
                on_progress=lambda nbytes: self.progress.advanced(path, nbytes),
                throttle=self.throttle,
            )
            try:
                url = (
                    run.urls.take(part.number)
                    if attempt == 1
                    else self.client.create_upload_url(record.eid, part.number, bytesize).upload_url
                )
                etag = self.client.put_part(url, body, part.size, doing=f"uploading {label}")
            except UploadUrlExpired as exc:
                self.progress.advanced(path, -body.sent)
                if attempt >= self.part_policy.max_attempts:
                    raise UploadFailed(f"{path}: {exc}") from exc
                log.info("upload URL expired; asking for a new one", part=part.number)
                self.on_retry("expired-url")
                if attempt > 1:
                    # Fresh URLs that arrive expired mean clock skew or a hiccup at the API:
                    # don't hammer it.
                    self.clock.sleep(self.part_policy.backoff(attempt - 2))
                continue
            except TransientError as exc:
                self.progress.advanced(path, -body.sent)
                if attempt >= self.part_policy.max_attempts:
                    raise UploadFailed(f"{path}: {exc} (after {attempt} attempts)") from exc
                delay = self.part_policy.backoff(attempt - 1, exc.retry_after)
                log.info("retrying part", part=part.number, error=str(exc), delay=round(delay, 2))
                self.on_retry("part")
                self.clock.sleep(delay)
                continue
            except NotFoundError:
                raise
            except (RequestRejected, ApiError) as exc:
                raise UploadFailed(f"{path}: {exc}") from exc
            except OSError as exc:
                raise InputProblem(
                    f"{path}: cannot read {label}: {exc.strerror or exc}", retryable=True
                ) from exc

            bare = etag.strip('"')
            md5_shaped = bool(_MD5_ETAG.match(bare))
            if self.etags_are_md5 is not md5_shaped:
                # First part ever, or storage changed its ways: remember what it does now.
                self.etags_are_md5 = md5_shaped
                self.journal.set_fact(self._etag_fact, "yes" if md5_shaped else "no")
                log.debug("storage ETags", md5=md5_shaped)
            md5 = ""
            if md5_shaped:
                try:
                    # Not hashed yet, or a hash cut short (""): compute it now.
                    md5 = (hashing.result() if hashing is not None else "") or md5_of_region(
                        path, part.offset, part.size, block_size=self.block_size
                    )
                except OSError as exc:
                    raise InputProblem(
                        f"{path}: cannot read {label}: {exc.strerror or exc}", retryable=True
                    ) from exc
            else:
                run.stop_hashing.set()  # nothing can check them: stop the hashes in flight
            if md5_shaped and bare.lower() != md5:
                # Storage received different bytes than we read: send this part again.
                self.progress.advanced(path, -body.sent)
                log.warning("ETag differs from the part's MD5; sending it again", part=part.number)
                self.on_retry("etag-mismatch")
                if attempt >= self.part_policy.max_attempts:
                    raise UploadFailed(f"{path}: {label} arrived corrupted {attempt} times")
                continue
            self.journal.record_part(record.id, part.number, part.size, md5, etag)
            self.progress.part_done(path, part.number)
            return

    # -- completion ------------------------------------------------------------------------------

    def _complete(self, path: Path, record: FileRecord, num_parts: int) -> tuple[str, str | None]:
        assert record.eid
        parts = self.journal.parts(record.id)
        missing = [n for n in range(1, num_parts + 1) if n not in parts]
        if missing:
            raise UploadFailed(f"{path}: parts {missing} have no ETag; cannot complete")
        uploaded = [UploadedPart(number=n, etag=parts[n].etag) for n in sorted(parts)]
        try:
            capture = self.client.complete_upload(record.eid, uploaded)
            return capture.state, capture.sid
        except ApiError as exc:
            # The completion may have happened with its answer lost: ask the capture itself.
            try:
                found = self.client.find_capture(record.eid)
            except ApiError:
                found = None
            if found is not None and not awaiting_upload(found.state):
                log.info("completion confirmed by listing", eid=record.eid, state=found.state)
                return found.state, found.sid
            if exc.server_message and "InvalidPart" in exc.server_message:
                # Storage lost or rejects our parts: their ETags are worthless, send all again.
                self.journal.forget_parts(record.id, str(exc))
            raise UploadFailed(f"{path}: {exc}") from exc

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopping: the upload will resume where it left off")

    def _check_gate(self, path: Path) -> None:
        reason = self.gate(path)
        if reason is not None:
            raise Paused(f"{path}: {reason}")
