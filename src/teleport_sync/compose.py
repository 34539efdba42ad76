"""Composition: the client, journal and uploader built from settings.

Kept apart from `daemon` so one-shot commands (`upload`, `status`) start without loading the
watcher, the poller and the metrics server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .actions import Actions
from .api import TeleportClient, client_from_settings
from .config import Settings
from .control import Control, bandwidth_limiter, budget_from
from .engine import Progress, Uploader
from .folders import capture_plan, effective, folder_for, watch_roots
from .journal import FileRecord, Journal, JournalError
from .lock import JournalLock, JournalUnwritable


@dataclass
class Components:
    settings: Settings
    client: TeleportClient
    journal: Journal
    uploader: Uploader
    control: Control


class FolderActions:
    """After READY/FAILED: the actions of the input's `[[watch.folder]]` (its results
    profiles and quality, done/failed folders and hooks), or the defaults."""

    def __init__(
        self,
        settings: Settings,
        client: TeleportClient,
        journal: Journal,
        *,
        retry_base_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        # A failed download's first retry delay (tests shorten it); None: the actions' default.
        retry = {} if retry_base_seconds is None else {"retry_base_seconds": retry_base_seconds}
        self._by_folder: dict[Path | None, Actions] = {}
        roots = sorted(watch_roots(settings), key=lambda p: len(p.absolute().parts), reverse=True)
        for folder in [None, *(f.path for f in settings.watch.folder)]:
            applied = effective(settings, folder) if folder is not None else None
            self._by_folder[folder] = Actions(
                client,
                journal,
                results=applied.results if applied else settings.results,
                actions=applied.actions if applied else settings.actions,
                roots=roots,  # the deepest first: results mirror below the nearest root
                results_dir=results_dir(settings),
                **retry,
            )

    def run_for(self, record: FileRecord) -> None:
        folder = folder_for(self.settings, Path(record.path))
        self._by_folder[folder.path if folder is not None else None].run_for(record)


def open_journal(settings: Settings) -> Journal:
    return Journal(settings.journal.path)


def results_dir(settings: Settings) -> Path:
    return settings.results.dir or settings.journal.path.parent / "results"


@contextmanager
def components(
    settings: Settings,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> Iterator[Components]:
    """Client, journal and uploader for `settings`, closed on exit.

    Holds the journal's writer lock for the whole time (raises JournalBusy when another
    process holds it) and checks the journal can be written (JournalUnwritable).
    """
    lock = JournalLock(settings.journal.path)
    lock.acquire()
    try:
        journal = open_journal(settings)
    except BaseException:
        lock.release()
        raise
    try:
        try:
            journal.check_writable()
        except JournalError as exc:
            raise JournalUnwritable(str(exc)) from None
        limiter = bandwidth_limiter(settings.upload.bwlimit)
        control = Control(journal, budget=budget_from(settings.budget), limiter=limiter)
        with client_from_settings(settings, on_retry=on_retry) as client:
            uploader = Uploader(
                client,
                journal,
                concurrency=settings.upload.concurrency,
                max_parts_in_flight=settings.upload.max_parts_in_flight,
                name_template=settings.upload.name_template,
                training_parameters=settings.upload.training_parameters,
                progress=progress,
                stop=stop,
                on_retry=on_retry,
                gate=control.gate,
                plan_for=lambda path: capture_plan(settings, path),
                throttle=limiter.consume if limiter is not None else None,
            )
            yield Components(settings, client, journal, uploader, control)
    finally:
        journal.close()
        lock.release()
