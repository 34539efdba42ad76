"""Send one file's parts: a fresh URL per attempt, a PUT, the ETag checked, one journal row.

Parts are sent as `FileRegion`s: by sendfile over plain http, in `block_size` blocks otherwise,
so memory does not grow with part size. Each attempt's MD5 is computed anew and checked against
MD5-shaped ETags (so a file rewritten in place between attempts is caught at once instead of
being reported as corruption attempt after attempt): beside the sending once storage is known to
answer with MD5s (first attempts' hashes asked ahead of their PUTs, so the hasher never idles),
after the PUT while that is not yet known, never for storage whose ETags are not MD5s (nothing
could check it). The hashing is `api.hashing`'s: parts hashed together in the lanes of one
AVX2 core where it can, else by hashlib on threads.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..api import ApiError, NotFoundError, TransientError, UploadUrlExpired
from ..api.filebody import FileRegion
from ..api.hashing import PartHasher, part_hasher
from ..api.prefetch import Prefetcher
from ..inputs import InputProblem
from ..journal import FileRecord
from ..logging import get_logger
from .context import EngineContext
from .errors import UploadFailed
from .plan import PartPlan
from .window import FlightWindow

_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")

log = get_logger("teleport_sync.engine")


@dataclass
class FileRun:
    """What the part threads of one file's upload share."""

    path: Path
    record: FileRecord
    bytesize: int
    abort: threading.Event
    hasher: PartHasher
    urls: Prefetcher[int, str]
    window: FlightWindow
    # Set when an ETag shows storage no longer answers with MD5s: hashes still running stop.
    stop_hashing: threading.Event = field(default_factory=threading.Event)
    # First attempts' hashes, asked ahead of their PUTs (storage known to answer MD5s): the
    # hasher never idles while parts remain, and the last parts do not wait for their digests
    # after their bytes have gone (~0.2 s a GiB against a CPU-bound sink).
    hashes: Prefetcher[int, Future[str]] | None = None
    # The first part failure in time: the one the upload reports.
    failure: BaseException | None = None
    _failure_lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, exc: BaseException) -> None:
        """A part failed: no part starts from now on, and the first failure is kept."""
        with self._failure_lock:
            if self.failure is None:
                self.failure = exc
        self.abort.set()


def url_threads(workers: int, started: int) -> int:
    """Threads asking for part URLs: the starting window's URLs within two round trips to the
    API (a part waits for its URL, and on a long path a round trip is 150 ms: eight threads
    took 1.2 s to start a window of 64), at least eight, no more than there are part threads."""
    return min(workers, max(8, -(-started // 2)))


class _Again(Exception):
    """This attempt did not land; try the part again (with a fresh URL and hash). `congested`:
    the path failed it (a server error, a reset, a timeout), so fewer parts go at once."""

    def __init__(self, congested: bool = False) -> None:
        super().__init__()
        self.congested = congested


class PartSender:
    """Step two of an upload: every part not yet acknowledged, `concurrency` at a time."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def send_all(self, path: Path, record: FileRecord, todo: list[PartPlan], bytesize: int) -> None:
        if not todo:
            return
        assert record.eid
        eid, client = record.eid, self.ctx.client
        # The parts in flight start at `concurrency` and may widen to `max_width` (window.py);
        # a thread per slot it may reach. Hashing runs beside the sending, not before it; part
        # URLs (and queued hashes) are asked for a round ahead of the window as it is now (no
        # more than there are threads to take them), so no PUT waits for its URL, and a narrow
        # window does not ask for a hundred URLs it may not use before they expire.
        workers = min(max(self.ctx.concurrency, self.ctx.max_width), len(todo))
        window = self._window(workers)
        started = window.limit
        ahead = lambda: min(workers, 2 * window.limit)  # noqa: E731
        hasher = part_hasher(workers)
        try:
            with (
                ThreadPoolExecutor(workers, thread_name_prefix="part") as pool,
                ThreadPoolExecutor(
                    url_threads(workers, started), thread_name_prefix="url"
                ) as url_pool,
            ):
                # One attempt per URL request: the part attempt that takes it is the retry unit.
                urls = Prefetcher(
                    lambda n: client.create_upload_url(eid, n, bytesize, retry=False).upload_url,
                    [part.number for part in todo],
                    ahead=ahead,
                    executor=url_pool,
                )
                run = FileRun(path, record, bytesize, threading.Event(), hasher, urls, window)
                if self.ctx.etags_are_md5 is True:
                    regions = {part.number: (part.offset, part.size) for part in todo}
                    run.hashes = Prefetcher(
                        lambda n: hasher.submit(path, *regions[n], run.stop_hashing),
                        list(regions),
                        ahead=ahead,  # queued: the hasher takes them as lanes or threads free
                        executor=None,  # submit only queues the work
                    )
                futures = [pool.submit(self.send_one, run, part) for part in todo]
                wait(futures, return_when=FIRST_EXCEPTION)
                if run.failure is not None:
                    # Parts not yet started are skipped (`run.abort`); those in flight finish.
                    urls.cancel()
                    for future in futures:
                        future.cancel()
        finally:
            hasher.close()
        self._learn(window, len(todo))
        if window.limit != started:
            log.info("parts in flight", path=record.path, started=started, ended=window.limit)
        if run.failure is not None:
            raise run.failure

    def _window(self, workers: int) -> FlightWindow:
        """This file's window: from what the path taught earlier files, if anything."""
        ctx = self.ctx
        started = ctx.start_width() if ctx.max_width else ctx.concurrency
        remembered = ctx.path_part_rate if started > ctx.concurrency else None
        learned = (ctx.path_width or 0) if remembered else 0
        at_least = ctx.path_width_at_least
        return FlightWindow(
            start=started,
            cap=workers,
            part_rate=remembered,
            held=learned if at_least else 0,
            found=0 if at_least else learned,
        )

    def _learn(self, window: FlightWindow, parts: int) -> None:
        """What this file taught of the path, journaled for the next file."""
        window.conclude()
        if window.path_width is not None and window.path_width < parts:
            # Found where the link is full (a file with fewer parts than that says nothing).
            self.ctx.learn_path_width(window.path_width, window.learned_part_rate)
        elif window.path_width is None and window.proven:
            # Over before the link was found full: what it did show, the next file starts at.
            self.ctx.learn_path_holds(window.proven, window.learned_part_rate)

    def send_one(self, run: FileRun, part: PartPlan) -> None:
        """One part, attempt after attempt, until storage acknowledges the right bytes."""
        try:
            self._send_until_acknowledged(run, part)
        except BaseException as exc:
            # Here, in the part's own thread, before its worker can take the next part: setting
            # the abort only once `send_all` woke up let that worker start (and PUT) one more.
            run.failed(exc)
            raise

    def _send_until_acknowledged(self, run: FileRun, part: PartPlan) -> None:
        attempt = 0
        clock = self.ctx.clock
        while not run.abort.is_set():
            self.ctx.check_stop()
            self.ctx.check_gate(Path(run.record.path))  # the input's path (pause PATH)
            if not run.window.acquire(lambda: run.abort.is_set() or self.ctx.stop.is_set()):
                continue  # stopped or aborted while waiting: the loop says which
            attempt += 1
            epoch = -1
            try:
                with self.ctx.part_slot():
                    epoch = run.window.part_started(clock.monotonic())
                    self._attempt(run, part, attempt)
                run.window.part_done(part.size, clock.monotonic(), epoch)
                return
            except _Again as again:
                if again.congested:
                    run.window.part_failed(epoch)  # the path failed it: fewer in flight
                continue
            finally:
                run.window.release()

    def _label(self, run: FileRun, part: PartPlan) -> str:
        # The input's name: for a .mov the bytes sent are its remux in the work folder, whose
        # name means nothing to whoever reads the message.
        return f"part {part.number}/{run.record.num_parts} of {Path(run.record.path).name}"

    def _attempt(self, run: FileRun, part: PartPlan, attempt: int) -> None:
        path, record, label = run.path, run.record, self._label(run, part)
        assert record.eid
        # This attempt's MD5: beside the sending when storage is known to answer with MD5
        # ETags; otherwise only if the ETag turns out MD5-shaped.
        hashing = self._start_hash(run, part, attempt)
        body = FileRegion(
            path,
            part.offset,
            part.size,
            block_size=self.ctx.block_size,
            on_progress=lambda nbytes: self.ctx.progress.advanced(path, nbytes),
            throttle=self.ctx.throttle,
        )
        try:
            etag = self._put(run, part, attempt, body, label)
        except _Again:
            self.ctx.progress.advanced(path, -body.sent)
            raise
        md5 = self._check_etag(run, part, etag, hashing, label)
        if md5 is None:
            # Storage received different bytes than we read: send this part again.
            self.ctx.progress.advanced(path, -body.sent)
            log.warning(
                "ETag differs from the part's MD5; sending it again",
                path=record.path,
                part=part.number,
            )
            self.ctx.on_retry("etag-mismatch")
            if attempt >= self.ctx.policy.max_attempts:
                raise UploadFailed(f"{record.path}: {label} arrived corrupted {attempt} times")
            raise _Again
        self.ctx.journal.record_part(record.id, part.number, part.size, md5, etag)
        self.ctx.progress.part_done(path, part.number)

    def _start_hash(self, run: FileRun, part: PartPlan, attempt: int) -> Future[str] | None:
        if self.ctx.etags_are_md5 is not True:
            return None
        if attempt == 1 and run.hashes is not None:
            return run.hashes.take(part.number)
        return run.hasher.submit(run.path, part.offset, part.size, run.stop_hashing)

    def _put(self, run: FileRun, part: PartPlan, attempt: int, body: FileRegion, label: str) -> str:
        """One PUT with a URL of its own; `_Again` for what another attempt may fix.

        The part attempt is the retry unit: its URL request is made once (no retries nested
        inside), and a failure feeds the pacer of the remote that failed, which every thread
        waits on before its next call to that remote."""
        ctx, path, policy = self.ctx, run.record.path, self.ctx.policy  # path: for messages
        assert run.record.eid
        pacer = ctx.client.pacer
        try:
            if attempt == 1:
                url = run.urls.take(part.number)
            else:
                url = ctx.client.create_upload_url(
                    run.record.eid, part.number, run.bytesize, retry=False
                ).upload_url
            pacer = ctx.client.storage_pacer
            pacer.wait()
            etag = ctx.client.put_part(url, body, part.size, doing=f"uploading {label}")
            pacer.succeeded()
            return etag
        except UploadUrlExpired as exc:
            if attempt >= policy.max_attempts:
                raise UploadFailed(f"{path}: {exc}") from exc
            log.info("upload URL expired; asking for a new one", path=path, part=part.number)
            ctx.on_retry("expired-url")
            if attempt > 1:
                # Fresh URLs that arrive expired mean clock skew or a hiccup at the API:
                # don't hammer it.
                ctx.client.pacer.failed(attempt - 2, policy=policy)
            raise _Again from exc
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise UploadFailed(f"{path}: {exc} (after {attempt} attempts)") from exc
            delay = pacer.failed(attempt - 1, exc.retry_after, policy=policy)
            log.info(
                "retrying part", path=path, part=part.number, error=str(exc), delay=round(delay, 2)
            )
            ctx.on_retry("part")
            raise _Again(congested=True) from exc
        except NotFoundError:
            raise
        except ApiError as exc:
            raise UploadFailed(f"{path}: {exc}") from exc
        except OSError as exc:
            raise _unreadable(path, label, exc) from exc

    def _check_etag(
        self, run: FileRun, part: PartPlan, etag: str, hashing: Future[str] | None, label: str
    ) -> str | None:
        """The part's MD5 ("" when nothing can check it), or None when the ETag disagrees."""
        bare = etag.strip('"')
        md5_shaped = bool(_MD5_ETAG.match(bare))
        self.ctx.learn_etags(md5_shaped)
        if not md5_shaped:
            run.stop_hashing.set()  # nothing can check them: stop the hashes in flight
            return ""
        try:
            # Not hashed yet, or a hash cut short (""): compute it now.
            md5 = (hashing.result() if hashing is not None else "") or run.hasher.submit(
                run.path, part.offset, part.size
            ).result()
        except OSError as exc:
            raise _unreadable(run.path, label, exc) from exc  # the file that could not be read
        return md5 if bare.lower() == md5 else None


def _unreadable(path: Path, label: str, exc: OSError) -> InputProblem:
    return InputProblem(f"{path}: cannot read {label}: {exc.strerror or exc}", retryable=True)
