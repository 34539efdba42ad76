"""The SQLite journal: the truth about every file, part, ETag and capture state.

All SQL of the project lives in this package. The journal never stores an upload URL or a token:
URLs are credentials while valid and are always requested fresh.

Durability: WAL, `synchronous=FULL` (a committed part survives power loss), one transaction per
acknowledged part, `busy_timeout` so the CLI can read while the daemon writes, and
`PRAGMA integrity_check` at open (`quick_check` for readers that write nothing: `status`,
`health`). The schema is versioned with `PRAGMA user_version`; each entry of `MIGRATIONS`
(`schema.py`) moves it one version up.

`Journal` is one class to its users, composed of one mixin per concern over `BaseJournal` (the
connection, transactions and shared plumbing), so each concern's SQL can be read on its own.
`states` owns the moves of a file's state; `lock` keeps one writer per journal.

Imports only the helpers at the top of the package (`models`, `timestamps`).
"""

from __future__ import annotations

from .base import (
    BaseJournal,
    FileReplaced,
    JournalError,
    JournalRowError,
    StaleCapture,
    UnreadableRow,
    shown,
    shown_path,
    utc_now,
)
from .bulk import BulkReportMixin
from .captures import CapturesMixin
from .control import CONTROL_GENERATION, ControlMixin
from .files import FilesMixin
from .outbox import OutboxMixin
from .outcomes import FileOutcome, OutcomesMixin
from .parts import PartsMixin
from .preflight import PreflightRow
from .records import FileRecord, OutboxRow, PartRecord
from .report import ReportMixin
from .results import ResultsMixin
from .schema import MIGRATIONS, SCHEMA_VERSION, _migrate_v5_events
from .sightings import SightingsMixin
from .states import (
    MOVES,
    REFUSED,
    IllegalMove,
    Source,
    UploadState,
    Verdict,
    action_key,
    malformed_state,
)


class Journal(
    FilesMixin,
    PartsMixin,
    CapturesMixin,
    SightingsMixin,
    ResultsMixin,
    OutboxMixin,
    ControlMixin,
    ReportMixin,
    BulkReportMixin,
    OutcomesMixin,
    BaseJournal,
):
    """One connection, guarded by a lock: the engine's worker threads share it."""


__all__ = [
    "CONTROL_GENERATION",
    "MIGRATIONS",
    "MOVES",
    "REFUSED",
    "SCHEMA_VERSION",
    "BaseJournal",
    "FileOutcome",
    "FileRecord",
    "FileReplaced",
    "IllegalMove",
    "Journal",
    "JournalError",
    "JournalRowError",
    "OutboxRow",
    "PartRecord",
    "PreflightRow",
    "Source",
    "StaleCapture",
    "UnreadableRow",
    "UploadState",
    "Verdict",
    "_migrate_v5_events",
    "action_key",
    "malformed_state",
    "shown",
    "shown_path",
    "utc_now",
]
