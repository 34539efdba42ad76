"""After a capture is READY or FAILED: download its models, move the input, run hooks.

Each action is recorded in the journal, so it runs once per capture, across restarts too.
Downloads and moves are recorded after they succeed (repeating them is harmless); hooks are
recorded before they start, so a crash mid-hook never runs a user's command twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .api import ApiError, TeleportClient
from .config import ActionsSettings, ResultsSettings
from .inputs import InputProblem, identify
from .journal import FileRecord, Journal
from .logging import get_logger
from .models import is_failed

log = get_logger("teleport_sync.actions")


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
    ) -> None:
        self.client = client
        self.journal = journal
        self.results = results
        self.settings = actions
        self.roots = [r.absolute() for r in roots]
        self.results_dir = results_dir

    def run_for(self, record: FileRecord) -> None:
        """Every action due for this capture that has not run yet; failures are logged."""
        state = (record.capture_state or "").upper()
        if state == "READY":
            if self.results.download and "download" not in record.actions_done:
                self._guard(record, "download", self._download)
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
            if action == "download":  # shown by status as result_error, not hidden behind READY
                self.journal.set_result_error(record.id, f"{exc}; tried again in a while")
            return
        if action == "download":
            self.journal.set_result_error(record.id, None)

    def _download(self, record: FileRecord) -> None:
        if not record.sid:
            raise ApiError(f"capture {record.eid} is READY but has no share id yet")
        metadata = self.client.metadata(
            record.sid, profiles=self.results.profiles, quality=self.results.quality
        )
        if not metadata.models:
            raise ApiError(
                f"capture {record.eid} has no models for profiles {self.results.profiles}"
            )
        relative = relative_to_roots(Path(record.path), self.roots)
        base = self.results_dir / relative.parent / relative.stem
        written = []
        for index, model in enumerate(metadata.models):
            suffix = Path(model.url.split("?", 1)[0]).suffix or ".bin"
            extra = f"-{index}" if len(metadata.models) > 1 else ""
            target = base.with_name(f"{base.name}{extra}{suffix}")
            self.client.download(model.url, target, expected_size=model.size)
            written.append(str(target))
            log.info("model downloaded", path=record.path, model=str(target), bytes=model.size)
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
