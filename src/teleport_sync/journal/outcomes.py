"""What Teleport did with each file, beside what pre-flight predicted: the studio's loop.

`record_teleport_posed` keeps the camera list's reading (posed of frames, the frames left out);
`outcomes` reads, per file, the final capture state, the failure slug, Teleport's posed/total
and pre-flight's verdict and report for the same version of the file, so a report
(`check --report`) can say how often a `hold`/`warn` was right and how often an `ok` failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..models import failure_slug, is_failed, is_terminal
from .base import BaseJournal, _py_path, utc_now
from .preflight import PREFLIGHT_COLUMNS, PREFLIGHT_JOIN


@dataclass(frozen=True)
class FileOutcome:
    """One file's outcome. `state` is None while the capture has not ended; `posed`/`frames`
    come from metadata v2's camera list (None without one; `frames` None when the service's
    names could not be matched); `preflight_*` are None when the current version was not
    checked."""

    file_id: int
    path: str
    eid: str | None
    state: str | None  # "READY" | "FAILED" (ERROR is FAILED here) | None
    failure_slug: str | None
    failure: str | None  # the server's reason as journaled
    posed: int | None
    frames: int | None
    left_out: list[str]
    preflight_verdict: str | None
    preflight_report: dict[str, Any] | None
    ended_at: str | None


class OutcomesMixin(BaseJournal):
    def record_teleport_posed(
        self, file_id: int, posed: dict[str, Any], *, eid: str | None = None
    ) -> None:
        """The camera list's reading for this capture (`results.cameras.TeleportPosed`)."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
            conn.execute(
                "UPDATE files SET teleport_posed = ?, updated_at = ? WHERE id = ?",
                (json.dumps(posed), utc_now(), file_id),
            )
            self._event(
                conn, file_id, "teleport-posed", f"{posed.get('posed')} of {posed.get('frames')}"
            )

    def outcomes(self, *, ended_only: bool = True) -> list[FileOutcome]:
        """Every file's outcome, oldest first (with `ended_only`, only captures that ended)."""
        rows = self._query(
            f"""SELECT f.id, f.path, f.eid, f.capture_state, f.error, f.teleport_posed,
                   f.fingerprint, {PREFLIGHT_COLUMNS},
                   (SELECT MAX(observed_at) FROM state_history h
                    WHERE h.file_id = f.id AND h.applied = 1) AS ended_at
               FROM files f {PREFLIGHT_JOIN} ORDER BY f.id"""
        )
        out = []
        for row in rows:
            if ended_only and not is_terminal(row["capture_state"]):
                continue
            out.append(_outcome(row))
        return out


def _outcome(row: Any) -> FileOutcome:
    state = row["capture_state"]
    failed = is_failed(state)
    ended = is_terminal(state)
    posed = json.loads(row["teleport_posed"]) if row["teleport_posed"] else {}
    current = row["preflight_fingerprint"] == row["fingerprint"]
    report = row["preflight_report"] if current else None
    return FileOutcome(
        file_id=row["id"],
        path=_py_path(row["path"]),
        eid=row["eid"],
        state=("FAILED" if failed else "READY") if ended else None,
        failure_slug=failure_slug(row["error"]) if failed else None,
        failure=row["error"] if failed else None,
        posed=posed.get("posed"),
        frames=posed.get("frames"),
        left_out=list(posed.get("left_out") or []),
        preflight_verdict=row["preflight_verdict"] if current else None,
        preflight_report=json.loads(report) if report else None,
        ended_at=row["ended_at"] if ended else None,
    )
