"""The daemon's side of one live journal per folder (`watch.claim`): the heartbeat thread, the
holds a claim's change brings (a folder taken over: what its old owner left; a folder another
journal owns: everything this daemon would upload from it), and the sentence that holds a file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..journal import Journal
from ..logging import get_logger
from ..watch.claim import Change, Claims
from ..watch.folders import watch_roots
from ..watch.lostjournal import claimed_reason, hold_claimed, hold_existing, journal_id

log = get_logger("teleport_sync.daemon")


class FolderClaims:
    def __init__(
        self,
        journal: Journal,
        settings: Callable[[], Settings],
        upload_existing: bool,
        on_change: Callable[[], None],
    ) -> None:
        self.journal = journal
        self._settings = settings
        self.claims = Claims(
            journal_id(journal),
            Path(journal.path),
            watch_roots(settings()),
            lease_seconds=settings().watch.claim_lease_seconds,
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

    def apply(self, changes: list[Change]) -> None:
        """The holds that `changes` bring, and what contended folders hold."""
        settings = self._settings()
        template = settings.upload.name_template
        for change in changes:
            if change.took_over is not None and not self.upload_existing:
                hold_existing(self.journal, change.root, settings.watch, template)
        for root, owner in self.claims.contended():
            hold_claimed(self.journal, root, owner, settings.watch, template)

    def moved(self, roots: list[Path]) -> None:
        """A reload changed the watch roots: new ones are claimed (or contended) at once."""
        self.apply(self.claims.set_roots(roots))

    def thread(self, stop: threading.Event) -> threading.Thread:
        """The heartbeat's thread (not started)."""
        return threading.Thread(target=self.keep, args=(stop,), name="claims", daemon=True)

    def keep(self, stop: threading.Event) -> None:
        """Thread: the claims' heartbeat, every quarter of the lease, until `stop`."""
        while not stop.wait(self.claims.beat_seconds):
            try:
                changes = self.claims.beat()
                if changes:
                    self.apply(changes)
                    self._on_change()
            except Exception:  # the heartbeat must outlive any one bad moment
                log.exception("unexpected error while renewing the watch folders' claims")
