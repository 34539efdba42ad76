"""Create a capture, exactly once per file version: intent token, adoption, sweeps.

Identity is a random token journaled before `POST /captures` and carried in the capture's name
while it uploads (`scan_001.zip [tsync:3f9a…]`). After a crash or a timed-out create, the
account's captures are listed and the one carrying *this intent's* token is adopted; extra ones
carrying it (a retried create that landed twice) are deleted. Nothing is ever matched by name
or creation time: another station's capture of a file with the same name, a person's, or one
made while the server's clock is wrong never carries our token, so it is never touched.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import ApiError, AuthenticationError, NotFoundError, TransientError
from ..inputs.frames import count_frames
from ..journal import FileRecord
from ..logging import get_logger
from ..models import CaptureOutput, InputDataFormat, NewCaptureInput, NewCaptureOutput
from ..timestamps import parse_utc
from .context import EngineContext
from .errors import StartOver, UploadFailed

TOKEN_TAG = "tsync"

log = get_logger("teleport_sync.engine")


def new_token() -> str:
    return secrets.token_hex(8)


def token_mark(token: str) -> str:
    return f"[{TOKEN_TAG}:{token}]"


def uploading_name(name: str, token: str) -> str:
    """The capture's name while it uploads: the final name plus the intent's token."""
    return f"{name} {token_mark(token)}"


def carries(capture: CaptureOutput, token: str) -> bool:
    return token_mark(token) in capture.name


class CaptureCreator:
    """Step one of an upload: make sure the file version has exactly one capture."""

    def __init__(
        self, ctx: EngineContext, training_parameters: Callable[[str], dict[str, Any] | None]
    ) -> None:
        self.ctx = ctx
        # Asked with the input's path at create time (per-folder and sidecar parameters).
        self.training_parameters = training_parameters
        # Files whose create was ambiguous (timed out, adopted): a late duplicate may still
        # appear on the server, so captures carrying their token are swept again at completion.
        self._ambiguous: set[int] = set()
        self._lock = threading.Lock()

    def ensure(self, record: FileRecord) -> FileRecord:
        """The row with an eid: adopted from an earlier try, or newly created."""
        journal = self.ctx.journal
        # A previous run meant to create a capture and may have, without journaling it.
        if record.intent_nonce is not None:
            if self._adopt(record, record.intent_nonce):
                return journal.get(record.id)
            # Not found; a listing that shifted under us may have missed it, so captures
            # carrying this token are looked for once more before completion.
            self._mark_ambiguous(record.id)
        token = journal.mark_create_intent(record.id, record.intent_nonce or new_token())
        created = self._create(record, token)
        if created is None:  # a retry found the capture the timed-out try had made
            return journal.get(record.id)
        journal.record_created(record.id, created.eid, created.chunk_size, created.num_parts)
        log.info("capture created", path=record.path, eid=created.eid, parts=created.num_parts)
        fresh = journal.get(record.id)
        if self.is_ambiguous(record.id):
            self.sweep(fresh)
        return fresh

    def _create(self, record: FileRecord, token: str) -> NewCaptureOutput | None:
        request = NewCaptureInput(
            name=uploading_name(record.name, token),
            bytesize=record.identity.size,
            input_data_format=record.input_data_format,
            training_parameters=self.training_parameters(record.path),
            num_frames=self._frames(record),
        )
        policy, attempt = self.ctx.policy, 0
        while True:
            self.ctx.check_stop()
            try:
                return self.ctx.client.create_capture(request)
            except TransientError as exc:
                self._mark_ambiguous(record.id)
                attempt += 1
                if attempt >= policy.max_attempts:
                    raise UploadFailed(f"{record.path}: {exc}") from exc
                self.ctx.clock.sleep(policy.backoff(attempt - 1, exc.retry_after))
                # The failed create may have happened on the server after all.
                if self._adopt(record, token):
                    return None
            except ApiError as exc:
                raise UploadFailed(f"{record.path}: {exc}") from exc

    def _frames(self, record: FileRecord) -> int | None:
        """`num_frames` for the create: the zip's images or the video's frames, as counted at
        intake for this version of the file, else counted now (cheap: structure only)."""
        facts = self.ctx.journal.control_facts(record.id)
        if facts["control_fingerprint"] == record.identity.fingerprint and facts["frames"]:
            return int(facts["frames"])
        try:
            fmt = InputDataFormat(record.input_data_format)
            return count_frames(Path(record.path), fmt).frames or None
        except (OSError, ValueError):
            return None

    def _carrying(self, token: str, record: FileRecord) -> list[CaptureOutput]:
        """Captures of the account carrying `token`, oldest first, each once.

        The walk of the listing stops at the create intent's time (less a clock-skew margin)
        while the listing is newest-first, as checked on the way: the capture of an intent
        cannot be older than the intent. Otherwise it reads the whole listing."""
        path = record.path
        intent_at = self.ctx.journal.get(record.id).intent_at
        since = parse_utc(intent_at) if intent_at else None
        try:
            found = self.ctx.client.search_captures(lambda c: carries(c, token), since=since)
        except AuthenticationError as exc:
            raise UploadFailed(f"{path}: {exc}") from exc
        except ApiError as exc:
            raise UploadFailed(f"{path}: cannot look for this file's capture: {exc}") from exc
        return sorted(found, key=lambda c: (c.created, c.eid))

    def _adopt(self, record: FileRecord, token: str) -> bool:
        ours = self.ctx.journal.known_eids()
        candidates = [c for c in self._carrying(token, record) if c.eid not in ours]
        if not candidates:
            return False
        keep = candidates[0]
        for extra in candidates[1:]:
            if extra.eid != keep.eid:
                self.delete_quietly(extra.eid, "duplicate created in the orphan window")
                self.ctx.journal.add_event(record.id, "deleted-duplicate", extra.eid)
        try:
            # The listing has no chunk size; asking for part 1's URL tells it.
            url = self.ctx.client.create_upload_url(keep.eid, 1, record.identity.size)
        except NotFoundError as exc:
            raise StartOver(f"{record.path}: capture {keep.eid} vanished: {exc}") from exc
        except ApiError as exc:
            raise UploadFailed(f"{record.path}: cannot adopt capture {keep.eid}: {exc}") from exc
        num_parts = max(1, math.ceil(record.identity.size / url.chunk_size))
        self.ctx.journal.record_created(record.id, keep.eid, url.chunk_size, num_parts)
        journal = self.ctx.journal
        journal.add_event(record.id, "adopted", f"capture {keep.eid} from the orphan window")
        self._mark_ambiguous(record.id)
        log.warning("adopted capture created before a crash", path=record.path, eid=keep.eid)
        return True

    def sweep(self, record: FileRecord) -> None:
        """Delete captures carrying this intent's token other than the journaled one."""
        if record.intent_nonce is None or record.eid is None:
            return
        ours = self.ctx.journal.known_eids()
        try:
            extras = [
                c.eid
                for c in self._carrying(record.intent_nonce, record)
                if c.eid != record.eid and c.eid not in ours
            ]
        except UploadFailed as exc:
            log.warning("could not check for duplicate captures", path=record.path, error=str(exc))
            return
        for eid in extras:
            self.delete_quietly(eid, "duplicate made by a create that timed out")
            self.ctx.journal.add_event(record.id, "deleted-duplicate", eid)

    def discard_unjournaled(self, record: FileRecord, why: str) -> list[str]:
        """Delete the captures carrying this row's intent token that the journal never
        recorded (a create whose answer a crash lost: no part of them was ever sent); their
        eids. Raises UploadFailed when the account cannot be listed."""
        if record.intent_nonce is None:
            return []
        ours = self.ctx.journal.known_eids()
        found = [c.eid for c in self._carrying(record.intent_nonce, record) if c.eid not in ours]
        for eid in found:
            self.delete_quietly(eid, why)
            self.ctx.journal.add_event(record.id, "deleted-unjournaled", eid)
        return found

    def sweep_before_completion(self, record: FileRecord) -> None:
        if self.is_ambiguous(record.id):
            self.sweep(record)
            with self._lock:
                self._ambiguous.discard(record.id)

    def is_ambiguous(self, file_id: int) -> bool:
        with self._lock:
            return file_id in self._ambiguous

    def _mark_ambiguous(self, file_id: int) -> None:
        with self._lock:
            self._ambiguous.add(file_id)

    def delete_quietly(self, eid: str, why: str) -> bool:
        """Delete a capture nobody needs; True once it is gone. A failure is logged and the
        capture kept in the journal's queue of discarded captures (`Uploader.finish_discards`
        tries again at the next round)."""
        try:
            self.ctx.client.delete_capture(eid)
            log.info("deleted capture", eid=eid, reason=why)
        except NotFoundError:
            pass
        except ApiError as exc:
            log.warning("could not delete capture; will retry", eid=eid, reason=why, error=str(exc))
            self.ctx.journal.discard_failed(eid, why, str(exc))
            return False
        self.ctx.journal.capture_discarded(eid)
        return True
