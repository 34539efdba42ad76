"""After a capture is READY or FAILED: download its models, move the input, run hooks.

Each action is recorded in the journal, so it runs once per capture, across restarts too.
Downloads and moves are recorded after they succeed (repeating them is harmless); hooks are
recorded before they start, so a crash mid-hook never runs a user's command twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..api import ApiError, TeleportClient
from ..config import ActionsSettings, ResultsSettings
from ..inputs import InputProblem, identify
from ..journal import FileRecord, Journal
from ..logging import get_logger
from ..models import is_failed
from ..timestamps import parse_utc, utc_in
from .downloads import (
    FileAccess,
    ModelOptions,
    fetch_models,
    fetch_previews,
    plan_models,
    result_folder,
)

log = get_logger("teleport_sync.actions")

# A failed download is tried again after 30 s, 1 min, 2 min, ... at most an hour apart.
RESULT_RETRY_BASE_SECONDS = 30.0
RESULT_RETRY_MAX_SECONDS = 3600.0


def result_retry_delay(attempts: int, base: float = RESULT_RETRY_BASE_SECONDS) -> float:
    return min(RESULT_RETRY_MAX_SECONDS, base * 2 ** min(attempts, 20))


def model_options(results: ResultsSettings) -> ModelOptions:
    return ModelOptions(quality=results.quality, lod=results.lod, use_cdn=results.use_cdn)


def relative_to_roots(path: Path, roots: list[Path]) -> Path:
    """The input's path below its watch root, or just its name when it is under none."""
    for root in roots:
        try:
            return path.relative_to(root)
        except ValueError:
            continue
    return Path(path.name)


class Actions:
    def __init__(
        self,
        client: TeleportClient,
        journal: Journal,
        *,
        results: ResultsSettings,
        actions: ActionsSettings,
        roots: list[Path],
        results_dir: Path,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_base_seconds: float = RESULT_RETRY_BASE_SECONDS,
    ) -> None:
        self.client = client
        self.journal = journal
        self.results = results
        self.settings = actions
        self.roots = [r.absolute() for r in roots]
        self.results_dir = results_dir
        self.now = now
        self.retry_base_seconds = retry_base_seconds
        self.access = FileAccess(results_dir, mode=results.mode, group=results.group)
        self._busy: set[int] = set()
        self._busy_lock = threading.Lock()

    def run_for(self, record: FileRecord) -> None:
        """Every action due for this capture that has not run yet; failures are logged.

        The poller and the daemon's retry pass both call this: a capture whose actions are
        running in one thread is skipped by the other (two downloads into one `.part` would
        interleave their bytes).
        """
        with self._busy_lock:
            if record.id in self._busy:
                return
            self._busy.add(record.id)
        try:
            self._run_due(self.journal.get(record.id))
        finally:
            with self._busy_lock:
                self._busy.discard(record.id)

    def _run_due(self, record: FileRecord) -> None:
        state = (record.capture_state or "").upper()
        if state == "READY":
            if self.results.download and self._download_due(record):
                self._guard_download(record)
            if self.settings.done_dir and "move" not in record.actions_done:
                self._guard(record, "move", lambda r: self._move(r, self.settings.done_dir))
            if self.settings.on_ready and "hook" not in record.actions_done:
                self._guard(record, "hook", lambda r: self._hook(r, self.settings.on_ready))
        elif is_failed(state):
            if self.settings.failed_dir and "move" not in record.actions_done:
                self._guard(record, "move", lambda r: self._move(r, self.settings.failed_dir))
            if self.settings.on_failed and "hook" not in record.actions_done:
                self._guard(record, "hook", lambda r: self._hook(r, self.settings.on_failed))

    def _guard(self, record: FileRecord, action: str, run) -> None:  # type: ignore[no-untyped-def]
        try:
            run(self.journal.get(record.id))
        except (ApiError, OSError, InputProblem) as exc:
            log.error(f"{action} failed; will try again later", path=record.path, error=str(exc))

    def _download_due(self, record: FileRecord) -> bool:
        if "download" in record.actions_done:
            return False
        if record.result_next_at is None:
            return True
        return parse_utc(record.result_next_at) <= self.now()

    def _guard_download(self, record: FileRecord) -> None:
        """Download; on failure keep the reason in the journal and schedule the next try."""
        try:
            self._download(self.journal.get(record.id))
        except (ApiError, OSError) as exc:
            error = str(exc)
            if isinstance(exc, OSError) and not isinstance(exc, ApiError) and exc.filename:
                error = (
                    f"cannot write {exc.filename}: {exc.strerror}; check [results] dir, its "
                    "permissions and free space"
                )
            delay = result_retry_delay(record.result_attempts, self.retry_base_seconds)
            at = utc_in(delay, self.now())
            self.journal.record_result_error(record.id, error, at)
            log.error("download failed; will try again", path=record.path, error=error, retry_at=at)

    def _download(self, record: FileRecord) -> None:
        if not record.sid:
            raise ApiError(f"capture {record.eid} is READY but has no share id yet")
        folder = result_folder(self.results_dir, Path(record.path), self.roots)
        plan = plan_models(
            self.client, record.sid, self.results.profiles, folder, model_options(self.results)
        )
        if not plan.files:
            raise ApiError(
                f"capture {record.eid} has no models for profiles {', '.join(plan.missing)}"
            )
        fetch_models(self.client, plan, self.access)
        notes = [f"the server had no models for profiles {', '.join(plan.missing)}"]
        notes = notes if plan.missing else []
        previews: list[str] = []
        if self.results.previews and record.eid:
            # Extras: a failure is noted, never a reason to fetch the models again.
            try:
                previews = fetch_previews(self.client, record.eid, folder, self.access)
            except (ApiError, OSError) as exc:
                notes.append(f"previews not saved: {exc}")
        by_profile = plan.by_profile()
        self.journal.record_results(record.id, by_profile, previews)
        if notes:
            self.journal.record_result_error(record.id, "; ".join(notes), None)
            log.warning("; ".join(notes), path=record.path, eid=record.eid)
        written = [p for paths in by_profile.values() for p in paths] + previews
        self.journal.mark_action(record.id, "download", written)

    def _move(self, record: FileRecord, destination_root: Path | None) -> None:
        assert destination_root is not None
        source = Path(record.path)
        if not source.exists():
            log.warning("input no longer exists; nothing to move", path=record.path)
            self.journal.mark_action(record.id, "move")
            return
        relative = relative_to_roots(source, self.roots)
        target = destination_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}.{record.eid}{target.suffix}")
        shutil.move(source, target)
        self.journal.update_location(record.id, str(target), identify(target))
        self.journal.mark_action(record.id, "move")
        log.info("input moved", source=str(source), target=str(target))

    def _hook(self, record: FileRecord, argv: list[str] | None) -> None:
        assert argv
        # Recorded first: a hook may have side effects a user never wants twice.
        self.journal.mark_action(record.id, "hook")
        env = dict(os.environ)
        env.update(
            TELEPORT_EID=record.eid or "",
            TELEPORT_SID=record.sid or "",
            TELEPORT_PATH=record.path,
            TELEPORT_STATE=record.capture_state or "",
            TELEPORT_VIEWER_URL=record.viewer_url or "",
        )
        # Never pass the secret on to user commands.
        env.pop("TELEPORT_SYNC_API__CLIENT_SECRET", None)
        try:
            result = subprocess.run(
                argv,
                env=env,
                timeout=self.settings.timeout_seconds,
                capture_output=True,
                text=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.error("hook timed out", argv=argv, seconds=self.settings.timeout_seconds)
            return
        except OSError as exc:
            log.error(
                "hook could not start; check [actions] on_ready/on_failed",
                argv=argv,
                error=str(exc),
            )
            return
        if result.returncode != 0:
            log.error(
                "hook failed",
                argv=argv,
                code=result.returncode,
                stderr=result.stderr.strip()[-500:],
            )
        else:
            log.info("hook ran", argv=argv, path=record.path)
