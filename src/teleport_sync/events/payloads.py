"""Notification events as plain data: what happened, to which file and capture, when.

An event's id is derived from what it is about (`ready` of capture X is always the same id), so
a receiver can deduplicate deliveries and the outbox never queues one event twice. A payload
names files, captures and timings; it never carries a secret, a token or a presigned URL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..journal import FileRecord, PreflightRow
from ..models import TeleportPosed, failure_sentence, failure_slug
from ..timestamps import utc_seconds

EVENT_KINDS = ("ready", "failed", "rejected", "held", "auth", "stuck", "test")
_NAMESPACE = uuid.UUID("5d4b3c1e-7f0a-4a6e-9d0c-6b1f2e3a4c5d")


def stable_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


iso_now = utc_seconds


@dataclass(frozen=True)
class Event:
    kind: str
    event_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"id": self.event_id, "event": self.kind, **self.data}


def safe_url(url: str | None) -> str | None:
    """A viewer or share URL without its query: query strings are where signatures live."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def timings(record: FileRecord, history: list[dict[str, Any]]) -> dict[str, Any]:
    """When the file was noticed, processing was first seen, the capture ended; durations."""
    first = history[0]["observed_at"] if history else None
    last = history[-1]["observed_at"] if history else None
    return {
        "noticed_at": record.created_at,
        "first_state_at": first,
        "ended_at": last,
        "seconds_from_notice_to_end": _seconds_between(record.created_at, last),
        "seconds_processing": _seconds_between(first, last),
    }


def _about(record: FileRecord) -> dict[str, Any]:
    return {
        "file": record.path,
        "file_name": Path(record.path).name,
        "capture_name": record.name,
        "eid": record.eid,
        "sid": record.sid,
    }


def preflight_summary(row: PreflightRow | None, record: FileRecord) -> dict[str, Any] | None:
    """What pre-flight said of this version of the file (verdict, reasons, worst frames)."""
    if row is None or row.fingerprint != record.identity.fingerprint:
        return None
    return {
        "verdict": row.verdict,
        "reasons": list(row.report.get("reasons") or []),
        "worst_frames": list(row.report.get("worst_frames") or []),
        "approved_at": row.approved_at,
    }


def held(record: FileRecord, row: PreflightRow, reason: str) -> Event:
    """`held`: pre-flight keeps this version of the file from upload until `approve`."""
    return Event(
        "held",
        stable_id(f"held:{record.id}:{row.fingerprint}"),
        {
            "occurred_at": row.checked_at,
            **_about(record),
            "state": "held",
            "reason": reason,
            "viewer_url": None,
            "result_paths": [],
            "preflight": preflight_summary(row, record),
            "timings": {"noticed_at": record.created_at, "held_at": row.checked_at},
        },
    )


def ended_reason(record: FileRecord, kind: str) -> str | None:
    """The sentence of a `ready`/`failed`: a failure's slug with what to do (unknown slugs as
    the server's text); for `ready`, "Teleport posed 87 of 100 photos; left out: ..." when the
    camera list was read, else None."""
    if kind == "failed":
        return failure_sentence(record.error or record.capture_state)
    if record.teleport_posed:
        return TeleportPosed.from_json(record.teleport_posed).sentence()
    return None


def capture_ended(
    record: FileRecord,
    history: list[dict[str, Any]],
    *,
    reason: str | None,
    viewer_url: str | None,
    preflight: dict[str, Any] | None = None,
) -> Event:
    """`ready` or `failed` for a capture that reached a terminal state."""
    state = (record.capture_state or "").upper()
    kind = "ready" if state == "READY" else "failed"
    return Event(
        kind,
        stable_id(f"{kind}:{record.eid}"),
        {
            "occurred_at": history[-1]["observed_at"] if history else iso_now(),
            **_about(record),
            "state": record.capture_state,
            "source": history[-1].get("source") if history else None,
            "reason": reason,
            "viewer_url": safe_url(viewer_url),
            "result_paths": list(record.result_paths),
            # What pre-flight predicted (a FAILED capture it warned about, say), or None.
            "preflight": preflight,
            # What Teleport did with the frames (metadata v2's camera list), or None.
            "teleport_posed": record.teleport_posed,
            "failure_slug": failure_slug(record.error) if kind == "failed" else None,
            "timings": timings(record, history),
        },
    )


def rejected(record: FileRecord, preflight: dict[str, Any] | None = None) -> Event:
    ident = record.identity
    key = f"rejected:{record.id}:{ident.dev}:{ident.inode}:{ident.size}:{ident.mtime_ns}"
    return Event(
        "rejected",
        stable_id(key),
        {
            "occurred_at": record.updated_at,
            **_about(record),
            "state": "rejected",
            "reason": record.error,
            "viewer_url": None,
            "result_paths": [],
            "preflight": preflight,
            "timings": {"noticed_at": record.created_at, "rejected_at": record.updated_at},
        },
    )


def stuck(record: FileRecord, since: str, seconds: float) -> Event:
    return Event(
        "stuck",
        stable_id(f"stuck:{record.eid}"),
        {
            "occurred_at": iso_now(),
            **_about(record),
            "state": record.capture_state,
            "reason": f"{record.capture_state} for {int(seconds)} s (since {since})",
            "viewer_url": None,
            "result_paths": [],
            "timings": {"noticed_at": record.created_at, "state_since": since},
        },
    )


def auth(failing: bool, error: str | None, since: str) -> Event:
    state = "failing" if failing else "recovered"
    return Event(
        "auth",
        stable_id(f"auth:{state}:{since}"),
        {
            "occurred_at": iso_now(),
            "state": state,
            "reason": error,
            "timings": {"failing_since": since},
        },
    )


def trial() -> Event:
    """The event `notify test` sends: it is about nothing, and says so."""
    return Event(
        "test",
        str(uuid.uuid4()),
        {
            "occurred_at": iso_now(),
            "state": "test",
            "reason": "a test event from `teleport-sync notify test`",
        },
    )
