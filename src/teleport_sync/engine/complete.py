"""Complete an upload: `/uploaded`, reconciled by reading the capture when the answer is lost;
then the capture's final name (without the intent's token), journaled and retried until done."""

from __future__ import annotations

from pathlib import Path

from ..api import ApiError, NotFoundError
from ..journal import FileRecord
from ..logging import get_logger
from ..models import UploadedPart, awaiting_upload
from .context import EngineContext
from .errors import StartOver, UploadFailed

log = get_logger("teleport_sync.engine")


class Completer:
    """Step three of an upload: tell the server every part is there, then name the capture."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def complete(self, path: Path, record: FileRecord, num_parts: int) -> tuple[str, str | None]:
        """The capture's state and sid once the server has all parts."""
        assert record.eid
        journal, client = self.ctx.journal, self.ctx.client
        parts = journal.parts(record.id)
        missing = [n for n in range(1, num_parts + 1) if n not in parts]
        if missing:
            raise UploadFailed(f"{path}: parts {missing} have no ETag; cannot complete")
        uploaded = [UploadedPart(number=n, etag=parts[n].etag) for n in sorted(parts)]
        try:
            capture = client.complete_upload(record.eid, uploaded)
            return capture.state, capture.sid
        except ApiError as exc:
            # The completion may have happened with its answer lost: ask the capture itself.
            try:
                # Twice before calling it gone: a listing paged while another station deletes
                # a capture can miss one.
                found = client.find_capture(record.eid) or client.find_capture(record.eid)
                listed = True
            except ApiError:
                found, listed = None, False
            if (listed and found is None) or (not listed and isinstance(exc, NotFoundError)):
                raise self.vanished(path, record, exc) from exc
            if found is not None and not awaiting_upload(found.state):
                log.info("completion confirmed by listing", eid=record.eid, state=found.state)
                return found.state, found.sid
            if exc.server_message and "InvalidPart" in exc.server_message:
                # Storage lost or rejects our parts: their ETags are worthless, send all again.
                journal.forget_parts(record.id, str(exc))
            raise UploadFailed(f"{path}: {exc}") from exc

    def completed_before_stop(self, record: FileRecord) -> bool:
        """Was `/uploaded` sent before a stop that lost its answer? Only possible once every
        part is acknowledged (completion is never sent earlier), so only then is the account
        read; a capture past CREATED is journaled as uploaded here, and given its final name.
        Raises UploadFailed when the account cannot be read."""
        assert record.eid
        journal = self.ctx.journal
        if record.num_parts is None or len(journal.parts(record.id)) < record.num_parts:
            return False
        try:
            found = self.ctx.client.find_capture(record.eid)
        except ApiError as exc:
            raise UploadFailed(
                f"{record.path}: cannot read capture {record.eid} to tell whether it was "
                f"completed before the stop: {exc}"
            ) from exc
        if found is None or awaiting_upload(found.state):
            return False  # gone (nothing to delete) or never completed
        journal.mark_uploaded(record.id, found.state, found.sid)
        log.info("completion confirmed by listing", eid=record.eid, state=found.state)
        self.rename(journal.get(record.id))
        return True

    def vanished(self, path: Path, record: FileRecord, exc: Exception) -> StartOver:
        """The capture is gone (deleted in the web UI, say): the file starts over, and says so."""
        why = (
            f"capture {record.eid} is gone from the account (deleted?) before its upload "
            "completed; the file starts over with a new capture"
        )
        self.ctx.journal.restart(
            record.id, record.identity, record.input_data_format, record.name, why
        )
        log.warning("capture vanished; starting over", path=str(path), eid=record.eid)
        return StartOver(f"{path}: {why} ({exc})")

    def rename(self, record: FileRecord) -> bool:
        """Give the capture its final name; False (and retried later) when that fails."""
        if record.eid is None or record.intent_nonce is None or record.renamed_at is not None:
            return True
        try:
            self.ctx.client.rename_capture(record.eid, record.name)
        except NotFoundError:
            log.warning("capture gone before it could be renamed", eid=record.eid)
        except ApiError as exc:
            log.warning(
                "could not give the capture its final name; will try again",
                path=record.path,
                eid=record.eid,
                error=str(exc),
            )
            return False
        self.ctx.journal.mark_renamed(record.id, record.name)
        return True
