"""Operator control over uploads: why a file waits, in words (`holds`: `pause`, budget holds,
`approve`), and the gate before each part and admission before each upload (`gate`: pauses,
the bandwidth limiter and upload window, frame counts and budgets).

Imports the journal, `inputs` and the helpers; `approve` also releases lost-journal holds
(`watch.lostjournal`, imported when called). The daemon, web console, status and CLI use it.
"""

from .gate import Control, bandwidth_limiter, budget_from, utc_day
from .holds import (
    PAUSE_ALL,
    approve,
    hold_reason,
    is_paused,
    normalise,
    pause_reason,
    paused_by,
    report_hooks,
)

__all__ = [
    "PAUSE_ALL",
    "Control",
    "approve",
    "bandwidth_limiter",
    "budget_from",
    "hold_reason",
    "is_paused",
    "normalise",
    "pause_reason",
    "paused_by",
    "report_hooks",
    "utc_day",
]
