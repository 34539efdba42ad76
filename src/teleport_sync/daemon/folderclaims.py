"""The daemon's side of one live journal per folder (`watch.claim`): the heartbeat thread, the
holds a claim's change brings (a folder taken over: what its old owner left; a folder another
journal owns: everything this daemon would upload from it), the sentence that holds a file, and
hand-overs (`watch.handoff`): what this daemon began in a folder taken over from it is given up
to the new owner, and what the old owner hands over here is uploaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..engine import Uploader, UploadFailed
from ..journal import FileRecord, Journal, UploadState
from ..logging import get_logger
from ..watch.claim import Change, Claims
from ..watch.folders import watch_roots
from ..watch.lostjournal import (
    NOT_TAKEN_FROM_US,
    NOTE_NOT_WRITTEN,
    claimed_reason,
    given_up_reason,
    hand_over,
    hold_claimed,
    hold_existing,
    journal_id,
    retell_claimed,
    retell_taken,
    take_handoffs,
    tell_done,
)

log = get_logger("teleport_sync.daemon")


class FolderClaims:
    def __init__(
        self,
        journal: Journal,
        settings: Callable[[], Settings],
        upload_existing: bool,
        on_change: Callable[[], None],
        uploader: Uploader,
    ) -> None:
        self.journal = journal
        self.uploader = uploader  # gives up the uploads begun in a folder taken over from us
        # (root, owner journal, owner run) told which files this journal completed there.
        self._told: set[tuple[Path, str, str]] = set()
        self._settings = settings
        self.claims = Claims(
            journal_id(journal),
            Path(journal.path),
            watch_roots(settings()),
            lease_seconds=settings().watch.claim_lease_seconds,
            settle_seconds=settings().watch.claim_settle_seconds,
            os_lock=settings().watch.claim_os_lock,
        )
        # True: files left by a journal whose claim is taken over are uploaded, not held.
        self.upload_existing = upload_existing
        # Called after a claim changed hands (roots reported again, unfinished work queued).
        self._on_change = on_change

    def start(self) -> list[Change]:
        """Claim (or contend for) every root; before any upload worker starts."""
        return self.claims.start()

    def hold_reason(self, path: Path) -> str | None:
        """Why `path` is not uploaded here (another journal's live claim), or None."""
        found = self.claims.owner_of(path)
        return None if found is None else claimed_reason(found[0], found[1], path)

    def give_up(self, record: FileRecord) -> bool:
        """For an upload worker, before it uploads `record`: False when its folder is not
        another live journal's. Else the file is held here, naming the owner, and an upload
        this daemon began there is given up: its capture deleted when never completed
        (`Uploader.give_up`), and the file handed over when the owner took the folder over
        from this journal. Raises UploadFailed when the account cannot be read to tell. True
        also while our claim on the folder is being confirmed (`_waits_for_claim`)."""
        path = Path(record.path)
        found = None if self._waits_for_claim(path) else self.claims.owner_of(path)
        if found is None:
            return self.claims.confirming(path) is not None
        root, owner = found
        log.warning("not starting: another journal watches this folder", path=str(path))
        if record.upload_state in (UploadState.UPLOADED, UploadState.REJECTED):
            return True  # done here before the owner came, or held already
        handed = owner.took_over_from == self.claims.journal_id
        sent = f"{len(self.journal.parts(record.id))} of {record.num_parts or '?'} parts"

        deleted: list[str] = []  # what give_up deleted: this row's capture, a crash-cut create's

        def why(discarded: list[str]) -> str:
            deleted.extend(discarded)
            if not handed and not deleted:
                return claimed_reason(root, owner, path)
            return given_up_reason(
                root, owner, path, deleted, sent, None if handed else NOT_TAKEN_FROM_US
            )

        try:
            gave_up = self.uploader.give_up(record, why)
        except UploadFailed as exc:
            raise UploadFailed(
                f"{root} is now watched by {owner.who()}; this daemon gives its upload of the "
                f"file up (uploading nothing more) once it can read the account: {exc}"
            ) from exc
        if not gave_up:
            log.warning(
                "completed before the stop: followed here although another journal watches "
                "the folder now",
                path=str(path),
                eid=record.eid,
            )
            if handed and record.eid:
                tell_done(self.journal, root, owner, only=record.id)
            return True
        given = self.journal.get(record.id)
        said = f"deleted its capture {', '.join(deleted)}" if deleted else "had made no capture"
        if handed and not hand_over(self.journal, root, owner, given, said):
            self.journal.mark_rejected(
                record.id, given_up_reason(root, owner, path, deleted, sent, NOTE_NOT_WRITTEN)
            )
        log.warning(
            "gave up an unfinished upload: another journal watches this folder now",
            path=str(path),
            eid=record.eid,
            owner=owner.who(),
            handed_over=handed,
        )
        return True

    def _waits_for_claim(self, path: Path) -> bool:
        """True while this daemon's claim on `path`'s folder is being confirmed; else the
        marker is read once more, and a claim there that is not ours wins at once."""
        if self.claims.confirming(path) is not None:
            log.info(
                "not starting yet: this daemon's claim on the folder is being confirmed",
                path=str(path),
            )
            return True
        stepped_down = self.claims.check(path)
        if stepped_down:
            self.apply(stepped_down)
            self._on_change()
        return False

    def apply(self, changes: list[Change]) -> None:
        """The holds that `changes` bring, what contended folders hold, and hand-overs."""
        settings = self._settings()
        template = settings.upload.name_template
        for change in changes:
            if change.lost_to is not None:  # holds made as its new owner name the owner now
                retell_taken(self.journal, self.claims.aliases_of(change.root), change.lost_to)
            previous = change.took_over
            if previous is None:
                continue
            retell_claimed(self.journal, self.claims.aliases_of(change.root), previous)
            if not self.upload_existing:
                hold_existing(self.journal, change.root, settings.watch, template, previous)
        for root, owner in self.claims.contended():
            hold_claimed(self.journal, root, owner, settings.watch, template)
            told = (root, owner.journal_id, owner.run)
            if owner.took_over_from == self.claims.journal_id and told not in self._told:
                self._told.add(told)  # once per owner's start: the list is rewritten whole
                tell_done(self.journal, root, owner)
        self.take_handoffs()

    def take_handoffs(self) -> int:
        """Release the files handed over by the journals this daemon's folders were taken
        over from (`watch.handoff`); how many."""
        released = 0
        for roots, predecessor in self.claims.owned():
            for path, sender in take_handoffs(self.journal, roots, predecessor):
                released += 1
                log.warning(
                    "handed over by the journal that watched the folder before: uploading it here",
                    path=str(path),
                    sender=sender,
                )
        return released

    def moved(self, roots: list[Path]) -> None:
        """A reload changed the watch roots: new ones are claimed (or contended) at once."""
        self.apply(self.claims.set_roots(roots))

    def thread(self, stop: threading.Event) -> threading.Thread:
        """The heartbeat's thread (not started)."""
        return threading.Thread(target=self.keep, args=(stop,), name="claims", daemon=True)

    def keep(self, stop: threading.Event) -> None:
        """Thread: the claims' heartbeat, every quarter of the lease (and a claim's
        confirmation when due), until `stop`."""
        # Awake at least every second: a reload may write a claim to confirm sooner.
        while not stop.wait(min(self.claims.next_due(), 1.0)):
            if self.claims.next_due() > 0:
                continue
            try:
                changes = self.claims.beat()
                if changes:
                    self.apply(changes)
                    self._on_change()
                elif self.take_handoffs():
                    self._on_change()
            except Exception:  # the heartbeat must outlive any one bad moment
                log.exception("unexpected error while renewing the watch folders' claims")
