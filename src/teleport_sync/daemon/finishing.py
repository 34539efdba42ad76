"""After an upload: captures renamed to their final name, and the actions of a capture that ended.

A capture's end (READY, FAILED) is seen by the poller, or announced by a webhook; either way its
actions (downloads, moves, hooks) run here, one capture at a time, followed by its notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..api import TeleportClient
from ..engine import Uploader
from ..events.emitter import EventHub
from ..journal import FileRecord, Journal, StaleCapture, action_key
from ..logging import get_logger
from .compose import FolderActions

log = get_logger("teleport_sync.daemon")


def viewer_url(client: TeleportClient, record: FileRecord) -> str | None:
    """The capture's viewer link, for a notification (the journal does not keep it)."""
    capture = client.find_capture(record.eid) if record.eid else None
    return capture.viewer_url if capture is not None else None


class Finishing:
    """What follows an upload: renames, and each ended capture's actions and notification."""

    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        uploader: Uploader,
        actions: FolderActions,
        events: EventHub,
        *,
        report_status: Callable[[], None],
    ) -> None:
        self.client = client
        self.journal = journal
        self.uploader = uploader
        # Replaced by a config reload (`signals.Reloader`): folders' actions may change live.
        self.actions = actions
        self.events = events
        self._report_status = report_status
        self._renaming: threading.Thread | None = None
        # Actions for one capture run one at a time (the poller and a webhook may both see it).
        self._terminal_lock = threading.Lock()

    def finish_renames(self) -> None:
        """Captures still named with their token get their final name, and unfinished captures
        cut loose from their rows are deleted, on a thread of their own: an API that is down
        must not hold up the start or the main loop."""
        if self._renaming is not None and self._renaming.is_alive():
            return

        def rename() -> None:
            try:
                self.uploader.finish_renames()
                self.uploader.finish_discards()
            except Exception:  # retried at the next round
                log.exception("renaming or deleting captures failed; will retry")

        self._renaming = threading.Thread(target=rename, name="rename", daemon=True)
        self._renaming.start()

    def on_terminal(self, record: FileRecord) -> None:
        """A capture ended (heard by the poller or a webhook, checked by the journal's state
        machine): its actions, then, once every one is done, its notification."""
        with self._terminal_lock:
            self._finish(record)
        self._report_status()

    def on_terminal_soon(self, record: FileRecord) -> None:
        """A webhook's READY/ERROR: answer Teleport at once, download on another thread."""

        def run() -> None:
            try:
                self.on_terminal(record)
            except Exception:  # logged; the periodic retry of pending actions picks it up
                log.exception("actions after a webhook failed", path=record.path)

        threading.Thread(target=run, name="webhook-actions", daemon=True).start()

    def retry_pending_actions(self) -> None:
        """Actions that failed (results dir not writable, API down) get another go, and a
        notification a crash left unsent goes out once its actions are done."""
        for record in self.journal.terminal(unnotified=True):
            if action_key(record.capture_state, "notify") in record.actions_done:
                continue
            try:
                with self._terminal_lock:
                    self._finish(record)
            except Exception:  # one capture must not hold up the others (nor the start)
                log.exception("actions of an ended capture failed; will retry", path=record.path)

    def _finish(self, record: FileRecord) -> None:
        if self.actions.run_for(record):
            # After the actions: a `ready` notification names the downloaded models.
            try:
                self.events.capture_ended(self.journal.get(record.id))
            except StaleCapture:
                log.info("the file started over; no notification for its old capture")
