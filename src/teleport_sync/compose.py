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

from .api import TeleportClient, client_from_settings
from .config import Settings
from .engine import Progress, Uploader
from .journal import Journal, JournalError
from .lock import JournalLock, JournalUnwritable


@dataclass
class Components:
    settings: Settings
    client: TeleportClient
    journal: Journal
    uploader: Uploader


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
        with client_from_settings(settings, on_retry=on_retry) as client:
            uploader = Uploader(
                client,
                journal,
                concurrency=settings.upload.concurrency,
                name_template=settings.upload.name_template,
                training_parameters=settings.upload.training_parameters,
                progress=progress,
                stop=stop,
                on_retry=on_retry,
            )
            yield Components(settings, client, journal, uploader)
    finally:
        journal.close()
        lock.release()
