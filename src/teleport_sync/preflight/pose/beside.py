"""The daemon's pose check, run beside the upload: only completion waits for its verdict.

`PoseBeside` is the engine's completion gate (`engine.ports.CompletionGate`). When a file
version's parts start going up, its check starts on a thread of its own (one check at a time:
it is CPU-bound on this class of machine); the upload worker sends the parts meanwhile. When
every part is acknowledged, the worker journals the row `waiting` and asks `wait`: it blocks
until the verdict is journaled (merged into the version's pre-flight row, so `status`, the
console, notifications, `approve` and `check --report` see it like any pre-flight result). A
hold keeps the capture uploaded but not completed until `approve`. A check that is not
installed, crashes or overruns is a `warn` reason and never holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...config import PreflightSettings
from ...journal import FileRecord, Journal, PreflightRow
from ...logging import get_logger
from ...models import InputDataFormat
from ..rules import Verdict
from .rules import PoseJudgement
from .runner import PoseRun

log = get_logger("teleport_sync.preflight.pose")

CheckPose = Callable[[Path, str, PreflightSettings], PoseJudgement]
OnJudged = Callable[[FileRecord, PreflightRow, float], None]
ORDER = (Verdict.OK, Verdict.WARN, Verdict.HOLD)


def _default_check(path: Path, kind: str, settings: PreflightSettings) -> PoseJudgement:
    from ..check import check_pose

    return check_pose(path, kind, settings)


class PoseBeside:
    def __init__(
        self,
        journal: Journal,
        settings_for: Callable[[Path], PreflightSettings],
        *,
        stop: threading.Event,
        check: CheckPose = _default_check,
        on_judged: OnJudged | None = None,
    ) -> None:
        self.journal = journal
        self.settings_for = settings_for
        self.stop = stop
        self._check = check
        self.on_judged = on_judged
        self._running: dict[tuple[int, str], threading.Event] = {}
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()

    def _wanted(self, record: FileRecord) -> PreflightSettings | None:
        settings = self.settings_for(Path(record.path))
        return settings if settings.enabled and settings.pose != "off" else None

    def applies(self, record: FileRecord) -> bool:
        return self._wanted(record) is not None

    def _judged(self, record: FileRecord) -> PreflightRow | None:
        """The version's journaled result once the pose check is in it, else None."""
        row = self.journal.preflight_of(record.id)
        if row is None or row.fingerprint != record.identity.fingerprint:
            return None
        return row if "pose" in (row.report.get("figures") or {}) else None

    def start(self, record: FileRecord) -> None:
        settings = self._wanted(record)
        if settings is None or self._judged(record) is not None:
            return
        key = (record.id, record.identity.fingerprint)
        with self._lock:
            if key in self._running:
                return
            done = self._running[key] = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(record, settings, key, done), name="pose", daemon=True
        )
        thread.start()

    def running(self) -> list[int]:
        """The files whose check runs or waits for its turn (for `status` and `health`)."""
        with self._lock:
            return [file_id for file_id, _ in self._running]

    def wait(self, record: FileRecord) -> str | None:
        if self._wanted(record) is None:
            return None
        self.start(record)  # resumed after a restart: the check may never have run
        with self._lock:
            done = self._running.get((record.id, record.identity.fingerprint))
        while done is not None and not done.wait(0.5):
            if self.stop.is_set():
                return None  # the uploader stops; the row stays `waiting` for the next run
        row = self._judged(record)
        if row is None or not row.holds:
            return None
        return (
            f"held by the pose check before completion: {row.summary}; its parts are uploaded "
            "and nothing is charged yet; look at it (teleport-sync check --pose PATH), then to "
            "complete it anyway run: teleport-sync approve PATH"
        )

    def _run(
        self,
        record: FileRecord,
        settings: PreflightSettings,
        key: tuple[int, str],
        done: threading.Event,
    ) -> None:
        path = Path(record.path)
        kind = "video" if record.input_data_format == InputDataFormat.VIDEO else "images"
        try:
            with self._one_at_a_time:
                log.info("pose check", path=str(path))
                judged = self._check(path, kind, settings)
        except Exception as exc:  # a bug here must not hold a file, nor stop the daemon
            log.exception("pose check failed; completion goes on", path=str(path))
            judged = _unjudged(f"pose check failed ({type(exc).__name__}: {exc})")
        try:
            row = self._save(record, judged)
            if self.on_judged is not None:
                self.on_judged(record, row, float(judged.figures.get("seconds") or 0.0))
        except Exception:
            log.exception("pose verdict not journaled; completion goes on", path=str(path))
        finally:
            with self._lock:
                self._running.pop(key, None)
            done.set()

    def _save(self, record: FileRecord, judged: PoseJudgement) -> PreflightRow:
        before = self.journal.preflight_of(record.id)
        same = before is not None and before.fingerprint == record.identity.fingerprint
        report: dict[str, Any] = dict(before.report) if before is not None and same else {}
        verdict = max(
            Verdict(before.verdict) if before is not None and same else Verdict.OK,
            judged.verdict,
            key=ORDER.index,
        )
        report["verdict"] = str(verdict)
        report["reasons"] = [*report.get("reasons", []), *judged.reasons]
        report["measures"] = [*report.get("measures", []), *(m.as_json() for m in judged.measures)]
        report["figures"] = {**report.get("figures", {}), "pose": judged.figures}
        report.setdefault("worst_frames", [])
        log_at = log.info if judged.verdict == Verdict.OK else log.warning
        log_at(
            "pose verdict", path=record.path, verdict=str(judged.verdict), reasons=judged.reasons
        )
        return self.journal.save_pose_result(
            record.id,
            record.identity.fingerprint,
            str(verdict),
            report,
            pose_holds=judged.verdict == Verdict.HOLD,
        )


def _unjudged(why: str) -> PoseJudgement:
    from .rules import judge_pose

    return judge_pose(PreflightSettings(), PoseRun("failed", 0.0, detail=why))
