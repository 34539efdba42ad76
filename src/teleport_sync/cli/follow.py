"""`upload --follow`: after the upload, wait for READY or FAILED and fetch the models.

The same poller and actions as the daemon, run in the foreground for the files just uploaded:
a one-shot pipeline for scripts. States are journaled as the daemon would, so `status` agrees.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from ..api import TransientError
from ..daemon.compose import Components, results_dir
from ..journal import FileRecord
from ..models import is_terminal
from ..results.actions import Actions
from ..results.poller import Poller


def follow(
    parts: Components,
    file_ids: list[int],
    *,
    stop: threading.Event,
    on_state: Callable[[FileRecord], None],
    interval_seconds: float | None = None,
) -> list[FileRecord]:
    """Poll until every file's capture is terminal (or `stop`); run its actions; the records."""
    settings = parts.settings
    actions = Actions(
        parts.client,
        parts.journal,
        results=settings.results,
        actions=settings.actions,
        roots=list(settings.watch.paths),
        results_dir=results_dir(settings),
    )
    poller = Poller(
        parts.client,
        parts.journal,
        interval_seconds=interval_seconds or settings.poll.interval_seconds,
        on_terminal=actions.run_for,
        stop=stop,
        # Ctrl-C sets `stop` from a signal handler: look at it twice a second while waiting.
        tick_seconds=0.5,
    )
    seen: dict[int, str | None] = {}
    for file_id in file_ids:  # finished before we came (an earlier run): fetch what is missing
        record = parts.journal.get(file_id)
        if is_terminal(record.capture_state):
            actions.run_for(record)
    while True:
        records = [parts.journal.get(file_id) for file_id in file_ids]
        for record in records:
            if seen.get(record.id, "") != record.capture_state:
                seen[record.id] = record.capture_state
                on_state(record)
        if all(is_terminal(r.capture_state) or r.capture_state == "DELETED" for r in records):
            return records
        # The API busy or away for a moment: the next due round asks again.
        with contextlib.suppress(TransientError):
            if poller.wait_and_poll() is None:
                break
    return [parts.journal.get(file_id) for file_id in file_ids]
