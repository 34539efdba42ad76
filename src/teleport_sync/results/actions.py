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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from ..api import ApiError, TeleportClient
from ..config import ActionsSettings, ResultsSettings
from ..inputs import InputProblem, identify
from ..journal import FileRecord, FileReplaced, Journal, Source, StaleCapture, action_key
from ..logging import get_logger
from ..models import FileIdentity, is_failed, is_terminal
from ..timestamps import parse_utc, utc_in
from .cameras import CAMERAS_FILE, posed_of
from .downloads import (
    FileAccess,
    ModelOptions,
    fetch_cameras,
    fetch_models,
    fetch_previews,
    plan_models,
    result_folder,
)
from .metadata import MetadataChoice

log = get_logger("teleport_sync.actions")

# A failed download is tried again after 30 s, 1 min, 2 min, ... at most an hour apart.
RESULT_RETRY_BASE_SECONDS = 30.0
RESULT_RETRY_MAX_SECONDS = 3600.0


def result_retry_delay(attempts: int, base: float = RESULT_RETRY_BASE_SECONDS) -> float:
    return min(RESULT_RETRY_MAX_SECONDS, base * 2 ** min(attempts, 20))


def model_options(results: ResultsSettings) -> ModelOptions:
    choice = MetadataChoice(results.metadata, results.crop_variant, results.coord_system)
    return ModelOptions(
        quality=results.quality, lod=results.lod, use_cdn=results.use_cdn, metadata=choice
    )


def relative_to_roots(path: Path, roots: list[Path]) -> Path:
    """The input's path below its watch root, or just its name when it is under none."""
    for root in roots:
        try:
            return path.relative_to(root)
        except ValueError:
            continue
    return Path(path.name)


# What a hook inherits of the daemon's environment: what a program needs to run, find its
# locale and reach the network, nothing else. An allow-list, so no secret the daemon was given
# (TELEPORT_SYNC_* overrides, CREDENTIALS_DIRECTORY, a cloud key) reaches a user's command.
# TELEPORT_SYNC_CONFIG is a path, not a secret: a hook may run `teleport-sync status` with it.
HOOK_ENVIRONMENT = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
        "XDG_RUNTIME_DIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY",
        "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "TELEPORT_SYNC_CONFIG",
    }
)  # fmt: skip
NEVER_PASSED = "TELEPORT_SYNC_"


def hook_environment(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """A hook's environment: the allow-list, `LC_*`, and the names `[actions]
    pass_environment` adds; never another `TELEPORT_SYNC_*` variable, whatever is asked."""
    wanted = set(extra) | HOOK_ENVIRONMENT
    return {
        name: value
        for name, value in environ.items()
        if name in HOOK_ENVIRONMENT
        or ((name in wanted or name.startswith("LC_")) and not name.startswith(NEVER_PASSED))
    }


def version_on_disk(path: Path) -> FileIdentity | None:
    """The identity of what is at `path` now, to compare with the journaled version: None when
    nothing is there; a special file, an empty or a non-regular one gets its stat identity (with
    no fingerprint, so it is never the capture's version). Raises InputProblem (retryable) when
    it cannot be read: then nothing may be done to it until it can."""
    try:
        return identify(path)
    except InputProblem as exc:
        if exc.retryable:
            raise
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")


def _same_bytes(a: FileIdentity, b: FileIdentity) -> bool:
    """The same version's bytes, wherever they live (a move changes dev and inode)."""
    return (a.size, a.mtime_ns, a.fingerprint) == (b.size, b.mtime_ns, b.fingerprint)


def _holds_files(folder: str) -> bool:
    """Does `folder` hold any file already (another capture's models, not ours to replace)?"""
    try:
        return any(path.is_file() for path in Path(folder).rglob("*"))
    except OSError:
        return False


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
        move_file: Callable[[Path, Path], object] = shutil.move,
    ) -> None:
        self.client = client
        self.journal = journal
        self.results = results
        self.settings = actions
        self.roots = [r.absolute() for r in roots]
        self.results_dir = results_dir
        self.now = now
        self.retry_base_seconds = retry_base_seconds
        # How an input is moved to done_dir/failed_dir (a test widens the window in it).
        self.move_file = move_file
        self.access = FileAccess(results_dir, mode=results.mode, group=results.group)
        self._busy: set[int] = set()
        self._busy_lock = threading.Lock()

    def run_for(self, record: FileRecord) -> bool:
        """Every action due for this ended capture that has not run yet, in order; True when
        all are done (then, and only then, its `ready`/`failed` notification may go out).

        The order is the rule of DESIGN §3a: the models (when `[results] download`), then the
        move to `done_dir`/`failed_dir`, then the hook. An action that fails stops the ones
        after it, says why in the journal and the log, and is tried again later: an input is
        never moved, and `on_ready` never runs, for a model that is not on disk.

        The poller, a webhook and the daemon's retry pass all call this: a capture whose
        actions are running in one thread is skipped by the others (two downloads into one
        `.part` would interleave their bytes).
        """
        with self._busy_lock:
            if record.id in self._busy:
                return False
            self._busy.add(record.id)
        try:
            return self._run_due(self.journal.get(record.id))
        finally:
            with self._busy_lock:
                self._busy.discard(record.id)

    def _due(self, record: FileRecord) -> list[tuple[str, Callable[[FileRecord], bool]]]:
        """The capture's actions, in the order they must run, each under its journal name."""
        state = record.capture_state
        steps: list[tuple[str, Callable[[FileRecord], bool]]] = []
        if (state or "").upper() == "READY":
            if self.results.download:
                steps.append(("download", self._guard_download))
            done_dir, hook = self.settings.done_dir, self.settings.on_ready
        elif is_failed(state):
            done_dir, hook = self.settings.failed_dir, self.settings.on_failed
        else:
            return steps
        if done_dir:
            move = partial(self._move, destination_root=done_dir)
            steps.append((action_key(state, "move"), lambda r: self._guard(r, "move", move)))
        if hook:
            run_hook = partial(self._hook, argv=hook)
            steps.append((action_key(state, "hook"), lambda r: self._guard(r, "hook", run_hook)))
        return steps

    def _run_due(self, record: FileRecord) -> bool:
        if not is_terminal(record.capture_state):
            return False
        eid = record.eid
        try:
            for action, run in self._due(record):
                if action not in record.actions_done and not run(record):
                    return False
                record = self.journal.get(record.id)
                if record.eid != eid:
                    raise StaleCapture(record.id, str(eid))
        except FileReplaced as exc:
            log.warning(
                "the input was replaced after its upload; the old capture's actions stop",
                path=record.path,
                eid=eid,
                reason=exc.why,
            )
            return False
        except StaleCapture:
            log.info("the file started over; the old capture's actions stop", path=record.path)
            return False
        return True

    def _confirm(self, record: FileRecord, act: str) -> FileRecord:
        """The row, once the file at its path is known to be the capture's version (or gone);
        `FileReplaced` when it is another version (the row has started over: nothing of the
        old capture may be done to the new bytes). `states.judge_version` is the rule."""
        on_disk = version_on_disk(Path(record.path))
        return self.journal.confirm_version(record.id, record.eid, on_disk, act)

    def _guard(self, record: FileRecord, action: str, run: Callable[[FileRecord], None]) -> bool:
        try:
            run(record)
            return True
        except (ApiError, OSError, InputProblem) as exc:
            log.error(f"{action} failed; will try again later", path=record.path, error=str(exc))
            return False

    def _download_due(self, record: FileRecord) -> bool:
        if "download" in record.actions_done:
            return False
        if record.result_next_at is None:
            return True
        return parse_utc(record.result_next_at) <= self.now()

    def _guard_download(self, record: FileRecord) -> bool:
        """Download when due; on failure keep the reason in the journal and schedule the next
        try. True once the models are on disk."""
        if not self._download_due(record):
            return False
        try:
            self._download(self.journal.get(record.id))
            return True
        except (ApiError, OSError, InputProblem) as exc:
            error = str(exc)
            if isinstance(exc, OSError) and not isinstance(exc, ApiError) and exc.filename:
                error = (
                    f"cannot write {exc.filename}: {exc.strerror}; check [results] dir, its "
                    "permissions and free space"
                )
            delay = result_retry_delay(record.result_attempts, self.retry_base_seconds)
            at = utc_in(delay, self.now())
            self.journal.record_result_error(record.id, error, at, eid=record.eid)
            log.error("download failed; will try again", path=record.path, error=error, retry_at=at)
            return False

    def _share_id(self, record: FileRecord) -> str:
        """The capture's share id, asked of the API when the journal has none yet."""
        if record.sid:
            return record.sid
        capture = self.client.find_capture(record.eid) if record.eid else None
        if capture is None or not capture.sid:
            raise ApiError(f"capture {record.eid} is READY but has no share id yet")
        self.journal.observe_reported(record.id, capture, Source.POLL)
        return capture.sid

    def _folder(self, record: FileRecord) -> Path:
        """This capture's own results folder (`journal.claim_result_dir`): where its input's
        path says, or, when another input's models already live there, that name with the eid."""
        wanted = result_folder(self.results_dir, Path(record.path), self.roots)
        folder, collided = self.journal.claim_result_dir(
            record.id, str(wanted), str(record.eid), in_use=_holds_files
        )
        if collided is not None:
            log.warning(
                "results folder taken by another input; this capture's models go beside it",
                path=record.path,
                taken_by=collided,
                folder=folder,
            )
        return Path(folder)

    def _download(self, record: FileRecord) -> None:
        self._confirm(record, "downloading its models")
        sid = self._share_id(record)
        folder = self._folder(record)
        plan = plan_models(
            self.client,
            sid,
            self.results.profiles,
            folder,
            model_options(self.results),
            facts=self.journal,
        )
        if not plan.files:
            raise ApiError(
                f"capture {record.eid} has no models for profiles {', '.join(plan.missing)}"
            )
        fetch_models(self.client, plan, self.access)
        notes = [f"the server had no models for profiles {', '.join(plan.missing)}"]
        notes = (notes if plan.missing else []) + plan.notes
        extras: list[str] = []
        # Extras: a failure is noted, never a reason to fetch the models again.
        try:
            extras = fetch_cameras(self.client, plan, self.access)
        except (ApiError, OSError) as exc:
            notes.append(f"the camera list was not saved: {exc}")
        if self.results.previews and record.eid:
            try:
                extras += fetch_previews(self.client, record.eid, folder, self.access)
            except (ApiError, OSError) as exc:
                notes.append(f"previews not saved: {exc}")
        by_profile = plan.by_profile()
        # The download took a while: the models are this file's only if it is still the
        # version they were made of (else they stay on disk, the old capture's, unattributed).
        self._confirm(record, "attributing the models to it")
        previews = [p for p in extras if Path(p).name.startswith("preview.")]
        # The camera list read against this version's names (confirmed just above).
        posed = posed_of(folder / CAMERAS_FILE, Path(record.path), record.input_data_format)
        if posed is not None:
            self.journal.record_teleport_posed(record.id, posed.as_json(), eid=record.eid)
        self.journal.record_results(record.id, by_profile, previews, eid=record.eid)
        if notes:
            self.journal.record_result_error(record.id, "; ".join(notes), None, eid=record.eid)
            log.warning("; ".join(notes), path=record.path, eid=record.eid)
        written = [p for paths in by_profile.values() for p in paths] + extras
        self.journal.mark_action(record.id, "download", written, eid=record.eid)

    def _move(self, record: FileRecord, destination_root: Path) -> None:
        done = action_key(record.capture_state, "move")
        source = Path(record.path)
        record = self._confirm(record, f"moving it to {destination_root}")
        if not source.exists():
            log.warning("input no longer exists; nothing to move", path=record.path)
            self.journal.mark_action(record.id, done, eid=record.eid)
            return
        # Its home: a watch root, or where a move of ours put it (a failure the API later
        # reports READY goes from failed_dir to done_dir, keeping its path below them).
        homes = [
            *self.roots,
            *(p.absolute() for p in (self.settings.done_dir, self.settings.failed_dir) if p),
        ]
        if not any(home in source.absolute().parents for home in homes):
            # `upload` of a file kept elsewhere: it is the user's, where they keep it.
            log.info("input is outside the watch folders; not moved", path=record.path)
            self.journal.mark_action(record.id, done, eid=record.eid)
            return
        relative = relative_to_roots(source.absolute(), homes)
        target = destination_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}.{record.eid}{target.suffix}")
        self.move_file(source, target)
        moved = identify(target)
        if not _same_bytes(moved, record.identity):
            self._put_back(record, target, source)
        self.journal.update_location(record.id, str(target), moved, eid=record.eid)
        self.journal.mark_action(record.id, done, eid=record.eid)
        log.info("input moved", source=str(source), target=str(target))

    def _put_back(self, record: FileRecord, moved: Path, source: Path) -> None:
        """The file was replaced between the check and the move: what was moved is a new
        version, not a finished input. It goes back where it was, and the row starts over
        (`FileReplaced`, raised by the journal's check of what is there now)."""
        if not source.exists():
            self.move_file(moved, source)
        else:  # its path is taken again meanwhile: say where it went
            log.error("a new version was moved by mistake; move it back", moved=str(moved))
        self.journal.confirm_version(record.id, record.eid, version_on_disk(source), "its move")
        raise OSError(f"{source} changed while it was being moved; looked at again later")

    def _hook(self, record: FileRecord, argv: list[str]) -> None:
        # The hook is told this file is the capture's input: only while it is.
        record = self._confirm(record, "running its hook")
        # Recorded first: a hook may have side effects a user never wants twice.
        self.journal.mark_action(
            record.id, action_key(record.capture_state, "hook"), eid=record.eid
        )
        env = hook_environment(os.environ, self.settings.pass_environment)
        env.update(
            TELEPORT_EID=record.eid or "",
            TELEPORT_SID=record.sid or "",
            TELEPORT_PATH=record.path,
            TELEPORT_STATE=record.capture_state or "",
            TELEPORT_VIEWER_URL=record.viewer_url or "",
        )
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
