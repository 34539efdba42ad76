"""Composition: the client, journal and uploader built from settings.

Kept apart from `root` so one-shot commands (`upload`, `status`) start without loading the
watcher, the poller and the metrics server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..api import DownloadBounds, TeleportClient, build_client
from ..config import ConfigError, Settings
from ..control import Control, bandwidth_limiter, budget_from
from ..engine import Progress, Uploader
from ..inputs.remux import Remuxes
from ..journal import FileRecord, Journal, JournalError
from ..journal.lock import JournalLock, JournalUnwritable
from ..logging import REDACTOR, get_logger
from ..preflight.deps import Importer
from ..preflight.gate import OnChecked, PreflightGate
from ..preflight.pose.beside import PoseBeside
from ..results.actions import Actions
from ..retry import Clock, RetryPolicy
from ..timestamps import parse_utc
from ..watch.folders import capture_plan, effective, folder_for, watch_roots


@dataclass
class Components:
    settings: Settings
    client: TeleportClient
    journal: Journal
    uploader: Uploader
    control: Control
    preflight: PreflightGate
    # The pose check, beside the upload: completion waits for its verdict.
    pose: PoseBeside | None = None


def _preflight_gate(
    settings: Settings, journal: Journal, importer: Importer | None, on_checked: OnChecked | None
) -> PreflightGate:
    """Pre-flight of the pictures, before each new capture (per folder's settings)."""
    return PreflightGate(
        journal,
        lambda path: effective(settings, path).preflight,
        importer=importer,
        on_checked=on_checked,
    )


def _pose_beside(
    settings: Settings, journal: Journal, uploader: Uploader, on_judged: OnChecked | None
) -> PoseBeside:
    """The pose check beside each upload; completion waits for its verdict."""
    return PoseBeside(
        journal,
        lambda path: effective(settings, path).preflight,
        stop=uploader.ctx.stop,
        on_judged=on_judged,
    )


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

    def run_for(self, record: FileRecord) -> bool:
        """The capture's due actions (see `Actions.run_for`); True when all are done."""
        folder = folder_for(self.settings, Path(record.path))
        return self._by_folder[folder.path if folder is not None else None].run_for(record)


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
    schedule_retry: Callable[[int], str | None] | None = None,
    preflight_importer: Importer | None = None,
    on_preflight: OnChecked | None = None,
) -> Iterator[Components]:
    """Client, journal and uploader for `settings`, closed on exit.

    Admission runs pre-flight (`[preflight]`, per folder) before each new capture; its decoders
    are looked for with `preflight_importer` (tests make an import fail through it).

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
        preflight = _preflight_gate(settings, journal, preflight_importer, on_preflight)
        control = Control(
            journal, budget=budget_from(settings.budget), limiter=limiter, preflight=preflight
        )
        control.duplicates = settings.upload.duplicates  # also set again by a reload
        with client_from_settings(settings, on_retry=on_retry) as client:
            # Searches of the listing stop at the time this station meant to create a capture.
            client.listing.hint = lambda eid: _parsed(journal.intent_time(eid))
            uploader = Uploader(
                client,
                journal,
                **_engine_settings(settings),
                schedule_retry=schedule_retry,
                progress=progress,
                stop=stop,
                on_retry=on_retry,
                gate=control.gate,
                plan_for=lambda path: capture_plan(settings, path),
                throttle=limiter.consume if limiter is not None else None,
            )
            pose = uploader.completion = _pose_beside(settings, journal, uploader, on_preflight)
            yield Components(settings, client, journal, uploader, control, preflight, pose)
    finally:
        journal.close()
        lock.release()


def _parsed(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


def _engine_settings(settings: Settings) -> dict[str, Any]:
    """The `[upload]` keys the engine takes as they are."""
    upload = settings.upload
    return {
        "concurrency": upload.concurrency,
        "max_parts_in_flight": upload.max_parts_in_flight,
        "adaptive": upload.adaptive,
        "name_template": upload.name_template,
        "training_parameters": upload.training_parameters,
        # A .mov is sent as its remux to MP4, made in a work folder beside the journal.
        "sources": Remuxes(settings.journal.path.parent / "work"),
    }


def client_from_settings(
    settings: Settings,
    *,
    clock: Clock | None = None,
    on_retry: Callable[[str], None] | None = None,
    policy: RetryPolicy | None = None,
) -> TeleportClient:
    """The client the CLI and daemon use, with every secret registered for redaction.

    Every retry is logged; `on_retry` (metrics) hears of it too.
    """

    def retried(doing: str, attempt: int, error: BaseException, delay: float) -> None:
        _log_retry(doing, attempt, error, delay)
        if on_retry is not None:
            on_retry("api")

    if not settings.api.client_id:
        raise ConfigError(
            "no client id configured: set [api] client_id (from the Teleport Developer Dashboard)"
        )
    secret = settings.client_secret_value()
    for configured in settings.secret_values():  # masked in every log line and journal text
        REDACTOR.add_secret(configured, min_length=4)
    return build_client(
        base_url=settings.api.base_url,
        auth_url=settings.api.auth_url,
        client_id=settings.api.client_id,
        client_secret=secret,
        scope=settings.api.scope,
        timeout=settings.api.timeout_seconds,
        # Parts in flight (bounded by max_parts_in_flight) plus room for API calls beside them.
        max_connections=max(8, _parts_at_once(settings) + 4),
        clock=clock,
        on_token=REDACTOR.add_secret,
        on_retry=retried,
        policy=policy,
        download_bounds=DownloadBounds(
            cap_bytes=settings.results.max_download_mib << 20,
            reserve_bytes=settings.results.min_free_mib << 20,
        ),
        full_walk_seconds=settings.poll.full_walk_seconds,
        clock_skew_seconds=settings.poll.clock_skew_seconds,
    )


def _parts_at_once(settings: Settings) -> int:
    upload = settings.upload
    widest = upload.max_parts_in_flight if upload.adaptive else upload.concurrency
    return min(max(upload.concurrency, widest) * upload.files_at_once, upload.max_parts_in_flight)


def _log_retry(doing: str, attempt: int, error: BaseException, delay: float) -> None:
    get_logger("teleport_sync.api").info(
        "retrying", doing=doing, attempt=attempt, error=str(error), delay=round(delay, 2)
    )
