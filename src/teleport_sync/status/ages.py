"""How long files have been waiting in their phase: what a fleet's alerts measure.

Pure over the `status --json` rows (`report.status_rows`): each row's phase says what it waits
for, and its journal times say since when. The daemon exports the oldest per phase as
`teleport_sync_oldest_seconds{phase}`, so an alert can say "a file has been failing for 3 h"
whatever the number of files or stations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..journal import shown_path
from ..timestamps import seconds_since

# Phases a file waits in for something (a slot, an approval, a retry, the server, a download).
# settling and incomplete wait for the file itself; done and rejected wait for nothing.
WAITING_PHASES = ("queued", "held", "paused", "failed", "processing", "downloading")


def phase_since(row: Mapping[str, Any], failing_since: Mapping[str, str]) -> str:
    """When the row entered its phase, as journal text.

    `failing_since` is `Journal.failing_since()` (raw paths): a retried failure's `updated_at`
    moves at every attempt, so the start of its run of failures comes from there. A capture
    is processing since its upload completed (the first state taken) and failed or
    downloading since the state that ended it (the last one taken).
    """
    phase = row["phase"]
    taken = [h["observed_at"] for h in row.get("state_history") or [] if h.get("applied", True)]
    if phase == "failed" and row.get("upload_state") == "failed":
        return failing_since.get(row["path"]) or row["updated_at"]
    if phase == "processing" and taken:
        return str(taken[0])
    if phase in ("failed", "downloading") and taken:
        return str(taken[-1])
    return str(row["updated_at"])


def oldest_by_phase(
    rows: list[dict[str, Any]], failing_since: Mapping[str, str], now: datetime | None = None
) -> dict[str, float]:
    """`{phase: seconds}` of the longest-waiting row of each waiting phase (0 when none)."""
    # status rows show paths escaped (`shown_path`); the journal's map is keyed by raw paths.
    shown = {shown_path(path): at for path, at in failing_since.items()}
    oldest = dict.fromkeys(WAITING_PHASES, 0.0)
    for row in rows:
        phase = row["phase"]
        if phase in oldest:
            waited = max(0.0, seconds_since(phase_since(row, shown), now))
            oldest[phase] = max(oldest[phase], waited)
    return oldest
