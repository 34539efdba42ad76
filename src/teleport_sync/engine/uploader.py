"""Upload one file, exactly once, resumably: create, send parts, complete, rename.

The journal is consulted before and written after every step that the server acknowledges:
- intent (with its random token) before `POST /captures`; eid, chunk size and part count in one
  transaction after it (`create.py`);
- one transaction per acknowledged part; on resume only parts without an ETag are sent
  (`parts.py`);
- a completion whose answer is lost is reconciled by reading the capture's state, and the
  capture is then renamed to its final name (`complete.py`).
A capture that vanishes before completion (404) makes the file start over, with the reason in
its row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..api import NotFoundError
from ..api.filebody import BLOCK_SIZE
from ..inputs import (
    InputProblem,
    capture_name,
    check_complete,
    identify,
    input_format_for,
    same_file_as,
)
from ..journal import FileRecord, Journal, UploadState
from ..logging import get_logger
from ..models import FileIdentity
from ..retry import Clock, RetryPolicy, SystemClock
from .complete import Completer
from .context import EngineContext, NoProgress, Progress
from .create import CaptureCreator
from .errors import FileChanged, Paused, UploadFailed
from .parts import PartSender
from .plan import plan_parts
from .ports import CompletionGate, SameFile, Sources, TeleportClient

log = get_logger("teleport_sync.engine")


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

    # What completion waits for (the pose check, run beside the parts), or nothing: set by
    # the composition root (`daemon.compose`).
    completion: CompletionGate | None = None

    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        *,
        concurrency: int = 4,
        max_parts_in_flight: int | None = None,
        adaptive: bool = False,
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
        plan_for: Callable[[Path], tuple[str, dict[str, Any] | None]] | None = None,
        schedule_retry: Callable[[int], str | None] | None = None,
        sources: Sources | None = None,
    ) -> None:
        self.client = client
        # Where an input's bytes come from (a .mov's remux to MP4), and when they are done.
        self.sources = sources or SameFile()
        self.journal = journal
        # When a file that failed `attempts` times is tried again (ISO time), or None: journaled
        # with the failure, in the same transaction. The daemon schedules; `upload` does not.
        self.schedule_retry = schedule_retry or (lambda attempts: None)
        self.name_template = name_template
        self.ctx = EngineContext(
            client=client,
            journal=journal,
            policy=part_policy or RetryPolicy(max_attempts=10),
            clock=clock or SystemClock(),
            progress=progress or NoProgress(),
            stop=stop or threading.Event(),
            on_retry=on_retry or (lambda what: None),
            block_size=block_size,
            concurrency=concurrency,
            gate=gate or (lambda path: None),
            throttle=throttle,
            in_flight=(
                threading.BoundedSemaphore(max_parts_in_flight) if max_parts_in_flight else None
            ),
            max_width=max(concurrency, max_parts_in_flight or 0) if adaptive else 0,
        )
        self.ctx.recall()  # what earlier runs learned of storage and of the path
        # Per input: its capture name and training parameters (folders, sidecars); raises
        # InputProblem for an input that cannot go as it is. Else the two defaults above.
        self.plan_for = plan_for or (
            lambda path: (capture_name(name_template, path), training_parameters)
        )
        self.creator = CaptureCreator(self.ctx, lambda path: self.plan_for(Path(path))[1])
        self.parts = PartSender(self.ctx)
        self.completer = Completer(self.ctx)

    # The switches tests and the CLI set after construction live in the shared context, where
    # the steps read them when they act.
    @property
    def progress(self) -> Progress:
        return self.ctx.progress

    @progress.setter
    def progress(self, value: Progress) -> None:
        self.ctx.progress = value

    @property
    def stop(self) -> threading.Event:
        return self.ctx.stop

    @stop.setter
    def stop(self, value: threading.Event) -> None:
        self.ctx.stop = value

    @property
    def on_retry(self) -> Callable[[str], None]:
        return self.ctx.on_retry

    @on_retry.setter
    def on_retry(self, value: Callable[[str], None]) -> None:
        self.ctx.on_retry = value

    @property
    def concurrency(self) -> int:
        return self.ctx.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self.ctx.concurrency = value

    @property
    def etags_are_md5(self) -> bool | None:
        """Whether storage answers with MD5 ETags (None: not known yet)."""
        return self.ctx.etags_are_md5

    def upload(self, path: Path, *, force: bool = False) -> UploadResult:
        """Upload `path` (or resume it); raises InputProblem, UploadFailed or its subclasses."""
        path = path.absolute()
        fmt = input_format_for(path)
        identity = identify(path)
        others = self.journal.paths_of_inode(identity.dev, identity.inode)
        twin = same_file_as(path, identity, others)
        if twin is not None:
            raise InputProblem(
                f"{path}: the same file as {twin} (a symlink or hard link to it), which is "
                "uploaded once"
            )
        name = self.plan_for(path)[0]
        record = self.journal.register(str(path), identity, fmt.value, name)

        if record.identity != identity or force:
            if not force:
                self._check_whole(path, record)
            why = "forced" if force else "the file changed since it was journaled"
            record = self._start_over(record, identity, fmt.value, name, why)
        elif record.upload_state == UploadState.UPLOADED and record.eid:
            self.completer.rename(record)
            return UploadResult(path, record.id, record.eid, True, 0, record.capture_state)

        try:
            return self._upload(path, record, identity)
        except (InputProblem, UploadFailed) as exc:
            # InputProblem: raised mid-upload when the file vanished or became unreadable.
            # (A stop or pause is a `Stopped`, not a failure: the row stays as it is.)
            if self.journal.get(record.id).upload_state == UploadState.REJECTED:
                raise  # refused meanwhile (`_unless_refused`): failing it would queue it again
            retry_at = self.schedule_retry(record.attempts + 1)
            self.journal.mark_failed(record.id, str(exc), retry_at)
            raise

    def finish_renames(self) -> int:
        """Rename uploaded captures still carrying their token; how many are still pending."""
        return sum(not self.completer.rename(r) for r in self.journal.pending_renames())

    def finish_discards(self) -> int:
        """Delete the unfinished captures restarts and refusals cut loose (queued by the
        journal with the restart itself); how many are still to be deleted."""
        return sum(
            not self.creator.delete_quietly(eid, why)
            for eid, why in self.journal.discarded_captures()
        )

    def _check_whole(self, path: Path, record: FileRecord) -> None:
        """A file changed since it was journaled is uploaded anew only if it is whole now: a
        retry comes straight from the journal, past the daemon's intake, and must not make a
        capture of a copy cut short. Otherwise the watcher looks at it again (FileChanged)."""
        try:
            completeness = check_complete(path)
        except OSError as exc:
            raise InputProblem(
                f"{path}: cannot read: {exc.strerror or exc}", retryable=True
            ) from None
        if completeness.complete:
            return
        self.journal.set_next_attempt(record.id, self.schedule_retry(record.attempts + 1))
        raise FileChanged(
            f"{path} changed since it was journaled and is not a whole input now "
            f"({completeness.reason}); it is looked at again once it settles"
        )

    def _start_over(
        self, record: FileRecord, identity: FileIdentity, fmt: str, name: str, why: str
    ) -> FileRecord:
        unfinished = record.eid if record.upload_state != UploadState.UPLOADED else None
        if unfinished:
            # An unfinished capture of an old version is useless to anyone: the restart queues
            # it for deletion (so a failed delete is retried), and it is deleted now.
            why = f"{why}; capture {unfinished} deleted"
        elif record.eid:
            why = f"{why}; capture {record.eid} of the previous version is kept"
        log.info("starting over", path=record.path, reason=why)
        restarted = self.journal.restart(record.id, identity, fmt, name, why)
        if unfinished:
            self.creator.delete_quietly(unfinished, f"abandoned: {why}")
        return restarted

    def _upload(self, path: Path, record: FileRecord, identity: FileIdentity) -> UploadResult:
        self.ctx.check_stop()
        self.ctx.check_gate(path)
        source = self.sources.source_for(record)
        size = identity.size if source == path else identify(source).size
        remade = source != path and record.eid and record.chunk_size
        if remade and -(-size // (record.chunk_size or 1)) != record.num_parts:
            # A remux made again (its work file was lost) by another PyAV came out another size:
            # the parts already sent are of other bytes. (The same PyAV makes the same bytes.)
            why = "its MP4 remux was made again and differs"
            record = self._start_over(record, identity, record.input_data_format, record.name, why)
        if record.eid is None:
            # The capture is made for the bytes that are sent (a remux's, not the .mov's).
            sized = replace(record, identity=replace(record.identity, size=size))
            record = self.creator.ensure(sized)
        try:
            return self._transfer(path, record, identity, (source, size))
        except (InputProblem, UploadFailed) as exc:
            self._unless_refused(path, record, exc)
            raise

    def _unless_refused(self, path: Path, record: FileRecord, exc: Exception) -> None:
        """The daemon's intake refused the file's new bytes (rewritten mid-upload) while this
        attempt sent the old ones: its verdict stands, and this attempt's capture is deleted
        (the refusal dropped it from the row)."""
        if self.journal.get(record.id).upload_state != UploadState.REJECTED:
            return
        assert record.eid
        self.creator.delete_quietly(record.eid, "the file was refused during its upload")
        raise FileChanged(
            f"{path} was rewritten while it was being uploaded and is refused as it is now; "
            f"its capture was deleted ({exc})"
        ) from exc

    def _transfer(
        self, path: Path, record: FileRecord, identity: FileIdentity, sent: tuple[Path, int]
    ) -> UploadResult:
        """Send `sent` (the file whose bytes go, and its size: `path` itself but for a .mov)."""
        assert record.eid and record.chunk_size and record.num_parts
        source, size = sent
        self.journal.mark_uploading(record.id)
        if self.completion is not None:
            self.completion.start(record)  # beside the parts, not in front of them
        plan = plan_parts(size, record.chunk_size, record.num_parts)
        acknowledged = self.journal.parts(record.id)
        todo = [p for p in plan if p.number not in acknowledged]
        done_bytes = sum(p.size for p in plan if p.number in acknowledged)
        self.ctx.progress.started(path, size, done_bytes, len(plan), len(acknowledged))
        log.info("uploading", path=str(path), eid=record.eid, resuming_from=len(acknowledged))
        try:
            self.parts.send_all(source, record, todo, size)
        except NotFoundError as exc:
            raise self.completer.vanished(path, record, exc) from exc
        self._check_unchanged(path, record, identity)
        self._wait_for_verdict(path, record)
        self.creator.sweep_before_completion(record)
        state, sid = self.completer.complete(path, record, len(plan))
        self.journal.mark_uploaded(record.id, state, sid)
        self.sources.done(record)
        log.info("uploaded", path=str(path), eid=record.eid, state=state)
        self.completer.rename(self.journal.get(record.id))
        return UploadResult(path, record.id, record.eid, False, len(todo), state)

    def _wait_for_verdict(self, path: Path, record: FileRecord) -> None:
        """Completion is the paid step: with a completion gate, the row waits (`waiting`) for
        its verdict; a hold leaves it there, uploaded but not completed, until `approve`."""
        if self.completion is None or not self.completion.applies(record):
            return
        self.journal.mark_waiting(record.id)
        held = self.completion.wait(record)
        if held is not None:
            raise Paused(f"{path}: {held}")
        self.ctx.check_stop()

    def _check_unchanged(self, path: Path, record: FileRecord, identity: FileIdentity) -> None:
        if identify(path) == identity:
            return
        assert record.eid
        self.journal.restart(
            record.id,
            identify(path),
            record.input_data_format,
            record.name,
            "the file changed during upload",
        )
        self.creator.delete_quietly(record.eid, "file changed during upload")
        raise FileChanged(
            f"{path} changed while it was being uploaded; its capture was deleted and the "
            "file will be uploaded again once it is complete"
        )

    def give_up(self, record: FileRecord, why: Callable[[list[str]], str]) -> bool:
        """Another station uploads this file now: end this one's upload of it uncompleted.
        Its capture (and any a crash-cut create made under its intent) never reached
        `/uploaded`, so nothing was paid: deleted, the row refused with `why(deleted eids)`.
        False when uploaded, or completed after all (an answer a crash lost: journaled as
        uploaded, §3). UploadFailed when the account cannot be read to tell."""
        if record.upload_state == UploadState.UPLOADED:
            return False
        if record.eid and self.completer.completed_before_stop(record):
            return False
        discarded = [record.eid] if record.eid else []
        if record.eid is None and record.intent_nonce is not None:
            discarded = self.creator.discard_unjournaled(record, "given up to another station")
        self.abandon(record, why(discarded))
        return True

    def abandon(self, record: FileRecord, why: str) -> None:
        """The input is gone: delete its unfinished capture and say why in the journal."""
        self.journal.restart(record.id, record.identity, record.input_data_format, record.name, why)
        if record.eid and record.upload_state != UploadState.UPLOADED:
            self.creator.delete_quietly(record.eid, why)  # queued by the restart if this fails
        # Not retried: there is nothing to retry until a file appears at this path again.
        self.journal.mark_rejected(record.id, why)
