"""The daemon's pre-flight: each file version checked once, journaled, and held or not.

`PreflightGate` is what `control.Control.admit` asks before an upload starts (its `Preflight`
hook). The check runs on the upload worker that took the file, before any capture exists; its
result is journaled with the version's fingerprint, so a restart, a retry or an `approve` never
checks the same version again. A bug in pre-flight never stops an upload: it is logged, and
the file is passed as `warn` with the error as its reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import PreflightSettings
from ..inputs import InputProblem
from ..journal import FileRecord, Journal, PreflightRow
from ..logging import get_logger
from .check import Checked, PreflightOff, check_file
from .deps import Availability, Importer, load_decoders
from .rules import Result, Verdict

log = get_logger("teleport_sync.preflight")

# Told of each check (the file, its journaled result, the seconds it took): metrics, and the
# `held` notification.
OnChecked = Callable[[FileRecord, PreflightRow, float], None]


class PreflightGate:
    def __init__(
        self,
        journal: Journal,
        settings_for: Callable[[Path], PreflightSettings],
        *,
        importer: Importer | None = None,
        on_checked: OnChecked | None = None,
        check: Callable[[Path, PreflightSettings, Availability], Checked] | None = None,
    ) -> None:
        self.journal = journal
        # Per path: `[preflight]` with its `[[watch.folder]]`'s keys (a reload swaps it).
        self.settings_for = settings_for
        self._importer = importer
        self._availability: Availability | None = None
        self.on_checked = on_checked
        # The pictures only: the pose check runs beside the upload (`pose.beside`).
        self._check = check or (
            lambda path, settings, found: check_file(path, settings, found, pose=False)
        )
        self._lock = threading.Lock()  # one check at a time: decoding is CPU-bound anyway
        self._finding = threading.Lock()

    @property
    def availability(self) -> Availability:
        # Looked for on first need, not at start: importing the decoders (numpy, PyAV, Pillow)
        # costs ~0.1 s and ~40 MiB, which a one-shot `upload` with pre-flight off never needs.
        with self._finding:
            if self._availability is None:
                self._availability = load_decoders(self._importer)
            return self._availability

    def __call__(self, record: FileRecord) -> str | None:
        """The reasons when pre-flight holds this version of the file, else None."""
        settings = self.settings_for(Path(record.path))
        if not settings.enabled or not self.availability.ok:
            return None
        stored = self.journal.preflight_of(record.id)
        if stored is None or stored.fingerprint != record.identity.fingerprint:
            stored = self._run(record, settings)
        if stored.holds:
            return stored.summary or "it broke a [preflight] rule"
        return None

    def _run(self, record: FileRecord, settings: PreflightSettings) -> PreflightRow:
        path = Path(record.path)
        started = time.monotonic()
        with self._lock:
            try:
                checked = self._check(path, settings, self.availability)
            except (PreflightOff, InputProblem, OSError) as exc:
                checked = _unchecked(f"pre-flight could not read the file: {exc}", started)
            except Exception as exc:  # a bug here must not stop uploads
                log.exception("pre-flight failed; the file goes on unjudged", path=str(path))
                checked = _unchecked(f"pre-flight failed ({type(exc).__name__}: {exc})", started)
        report = checked.as_json()
        verdict = str(checked.result.verdict)
        row = self.journal.save_preflight(
            record.id, record.identity.fingerprint, verdict, report, checked.thumbnails
        )
        if self.on_checked is not None:
            self.on_checked(record, row, checked.seconds)
        log_at = log.info if verdict == Verdict.OK else log.warning
        log_at(
            "pre-flight",
            path=str(path),
            verdict=verdict,
            reasons=report["reasons"] or None,
            seconds=round(checked.seconds, 2),
        )
        return row

    def state(self) -> tuple[bool, str | None]:
        """(is pre-flight on for the defaults, why not); per-folder `enabled` may differ."""
        if not self.availability.ok:
            return False, self.availability.reason
        if not self.settings_for(Path("/")).enabled:
            return False, "[preflight] enabled = false"
        return True, None


def _unchecked(why: str, started: float) -> Checked:
    """A file pre-flight could not judge: passed as warn (never held), saying why."""
    result = Result(Verdict.WARN, (why,), (), (), {})
    return Checked(result, time.monotonic() - started, [])
