"""What the journal hands out: immutable records of its rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import FileIdentity
from .states import UploadState


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: str
    identity: FileIdentity
    input_data_format: str
    name: str
    eid: str | None
    sid: str | None
    chunk_size: int | None
    num_parts: int | None
    upload_state: UploadState
    capture_state: str | None
    error: str | None
    intent_at: str | None
    attempts: int
    next_attempt_at: str | None
    result_paths: list[str]
    actions_done: list[str]
    created_at: str
    updated_at: str
    # The create intent's random token, carried in the capture's name until it is renamed to
    # `name` (`renamed_at`): the only thing that ties a capture on the account to this row.
    intent_nonce: str | None = None
    renamed_at: str | None = None
    # Results (schema: `_migrate_v7_results`); defaults so other constructors need not know them.
    results_by_profile: dict[str, list[str]] = field(default_factory=dict)
    preview_paths: list[str] = field(default_factory=list)
    result_error: str | None = None
    result_attempts: int = 0
    result_next_at: str | None = None
    viewer_url: str | None = None
    # The one folder this row's models go to, once claimed (`claim_result_dir`, schema v9).
    result_dir: str | None = None
    # What Teleport did with the frames (metadata v2's camera list; `results.cameras`).
    teleport_posed: dict[str, Any] | None = None
    # The listing did not show this capture since then (schema: `_migrate_listing`), and a full
    # walk of it confirmed that at `unlisted_confirmed_at`; both None while it is listed.
    unlisted_since: str | None = None
    unlisted_confirmed_at: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    """One notification for one target: delivered at least once, or given up on."""

    event_id: str
    target: str
    kind: str
    payload: str
    created_at: str
    attempts: int
    next_attempt_at: str
    delivered_at: str | None
    given_up_at: str | None
    last_error: str | None


@dataclass(frozen=True)
class PartRecord:
    number: int
    size: int
    md5: str
    etag: str
    acknowledged_at: str
