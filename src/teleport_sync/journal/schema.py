"""The journal's schema: one migration per version, in order.

`MIGRATIONS[i]` moves a journal from `PRAGMA user_version` i to i + 1; `SCHEMA_VERSION` is the
version this teleport-sync writes. Migrations get a `sqlite_utils.Database` (typed `Any` so that
sqlite-utils is imported only when a schema is built).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import PurePath
from typing import Any


def _migrate_v1(db: Any) -> None:
    db["files"].create(
        {
            "id": int,
            "path": str,
            "dev": int,
            "inode": int,
            "size": int,
            "mtime_ns": int,
            "fingerprint": str,
            "input_data_format": str,
            "name": str,
            "eid": str,
            "sid": str,
            "chunk_size": int,
            "num_parts": int,
            "upload_state": str,
            "capture_state": str,
            "error": str,
            "intent_at": str,
            "attempts": int,
            "next_attempt_at": str,
            "result_paths": str,
            "actions_done": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"path", "size", "upload_state", "created_at", "updated_at"},
        defaults={
            "upload_state": "pending",
            "attempts": 0,
            "result_paths": "[]",
            "actions_done": "[]",
        },
    )
    db["files"].create_index(["path"], unique=True)
    db["files"].create_index(["eid"])
    db["parts"].create(
        {
            "file_id": int,
            "number": int,
            "size": int,
            "md5": str,
            "etag": str,
            "acknowledged_at": str,
        },
        pk=("file_id", "number"),
        foreign_keys=[("file_id", "files", "id")],
        not_null={"size", "etag", "acknowledged_at"},
    )
    db["state_history"].create(
        {"id": int, "file_id": int, "eid": str, "state": str, "observed_at": str},
        pk="id",
        foreign_keys=[("file_id", "files", "id")],
        not_null={"state", "observed_at"},
    )
    db["state_history"].create_index(["file_id"])
    db["events"].create(
        {"id": int, "file_id": int, "at": str, "kind": str, "message": str},
        pk="id",
        not_null={"at", "kind"},
    )


def _migrate_v2(db: Any) -> None:
    # What we have learned about the servers, kept across runs (e.g. whether storage answers
    # with MD5 ETags, so the first parts of the next run need not be hashed in vain).
    db["facts"].create({"key": str, "value": str, "learned_at": str}, pk="key")


_RESULT_COLUMNS: dict[str, tuple[type, Any]] = {
    "results_by_profile": (str, "{}"),  # {"ply": ["/…/chair.zip/ply/model.ply"], ...}
    "preview_paths": (str, "[]"),
    "result_error": (str, None),  # why the last download failed; NULL once it succeeds
    "result_attempts": (int, 0),
    "result_next_at": (str, None),  # when a failed download is tried again (backoff)
    "viewer_url": (str, None),  # the capture's web viewer, from the listing
}


def _migrate_v7_results(db: Any) -> None:
    # Column by column and only if absent: other branches' migrations may add some of these.
    columns = db["files"].columns_dict
    for name, (kind, default) in _RESULT_COLUMNS.items():
        if name not in columns:
            db["files"].add_column(name, kind, not_null_default=default)


def _migrate_v3_sightings(db: Any) -> None:
    # Files noticed but not yet handed to the uploader (settling, incomplete), so that every
    # noticed file has a status row from its first event, and the time since which a file has
    # been incomplete survives restarts. A failed download's error, kept apart from `error`.
    db["sightings"].create(
        {
            "path": str,
            "root": str,
            "stage": str,
            "reason": str,
            "size": int,
            "mtime_ns": int,
            "first_seen_at": str,
            "incomplete_since": str,
            "updated_at": str,
        },
        pk="path",
        not_null={"stage", "first_seen_at", "updated_at"},
    )
    db.execute("ALTER TABLE files ADD COLUMN result_error TEXT")


def _migrate_v4_intent_token(db: Any) -> None:
    # Capture identity (issue 10): the intent's token and when the capture got its final name.
    db["files"].add_column("intent_nonce", str)
    db["files"].add_column("renamed_at", str)


def _migrate_v5_events(db: Any) -> None:
    # Where a state was heard (poll or webhook), and the notification outbox: one row per event
    # and target, kept after delivery so a re-emitted event id is recognised and not sent twice.
    db.execute("ALTER TABLE state_history ADD COLUMN source TEXT")
    db["outbox"].create(
        {
            "event_id": str,
            "target": str,
            "kind": str,
            "payload": str,
            "created_at": str,
            "attempts": int,
            "next_attempt_at": str,
            "delivered_at": str,
            "given_up_at": str,
            "last_error": str,
        },
        pk=("event_id", "target"),
        not_null={"kind", "payload", "created_at", "next_attempt_at"},
        defaults={"attempts": 0},
    )
    db["outbox"].create_index(["delivered_at", "given_up_at", "next_attempt_at"])
    # Captures and rejections that ended before notifications existed are not news.
    db.execute(
        "UPDATE files SET actions_done = json_insert(COALESCE(actions_done, '[]'), '$[#]', "
        "'notify') WHERE upload_state = 'rejected' "
        "OR UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR')"
    )


def _migrate_v6_control(db: Any) -> None:
    # Operator control. `paused`: paths and folders (or "*", everything) that start no new part.
    # On `files`: what was learnt about the input before upload (frames, duration, the cost
    # estimate), a budget hold and its approval, and the UTC day the capture was counted on;
    # all valid for the version whose fingerprint is `control_fingerprint` (a changed file is
    # a new capture: counted, priced and perhaps held again).
    db["paused"].create({"path": str, "paused_at": str}, pk="path")
    db["budget_days"].create({"day": str, "frames": int, "captures": int}, pk="day")
    for column, kind in (
        ("frames", "INTEGER"),
        ("duration_seconds", "REAL"),
        ("estimated_cost", "REAL"),
        ("held_reason", "TEXT"),
        ("approved_at", "TEXT"),
        ("budget_day", "TEXT"),
        ("control_fingerprint", "TEXT"),
    ):
        db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")


def _migrate_v8_discards(db: Any) -> None:
    # Unfinished captures cut loose from their row by a restart (the file changed, was refused,
    # vanished) or a `forget`: queued here in the same transaction, deleted from the account by
    # the daemon and retried until done, so none is left CREATED with nothing pointing at it.
    db["discarded_captures"].create(
        {
            "eid": str,
            "file_id": int,
            "reason": str,
            "queued_at": str,
            "attempts": int,
            "last_error": str,
        },
        pk="eid",
        not_null={"queued_at", "attempts"},
        defaults={"attempts": 0},
    )


def _migrate_v9_lifecycle(db: Any) -> None:
    # The capture state machine (states.judge_capture_state): a heard state that moved nothing
    # (too early, a replay, a rollback) is kept in the history as seen, with why. And each row
    # claims the one results folder its capture's models go to, so two inputs never share one.
    db.execute("ALTER TABLE state_history ADD COLUMN applied INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE state_history ADD COLUMN note TEXT")
    db.execute("ALTER TABLE files ADD COLUMN result_dir TEXT")
    # Rows that downloaded before claims existed claim the folder they used:
    # `<folder>/<profile>/<file>`, so a new capture is never handed it.
    for row in db.execute("SELECT id, results_by_profile FROM files").fetchall():
        paths = [p for ps in json.loads(row[1] or "{}").values() for p in ps]
        if paths:
            folder = str(PurePath(paths[0]).parent.parent)
            db.execute("UPDATE files SET result_dir = ? WHERE id = ?", (folder, row[0]))


def _migrate_v10_failed_actions(db: Any) -> None:
    # An ended capture's actions are journaled per outcome (`states.action_key`): a failure's
    # move, hook and notification are `failed:move`, ... so that a capture the API later
    # reports READY still gets its READY actions. Rows that failed before keep what they did.
    for file_id, done in db.execute(
        "SELECT id, actions_done FROM files WHERE UPPER(capture_state) IN ('FAILED', 'ERROR')"
    ).fetchall():
        actions = json.loads(done or "[]")
        renamed = [f"failed:{a}" if a in ("move", "hook", "notify") else a for a in actions]
        db.execute("UPDATE files SET actions_done = ? WHERE id = ?", (json.dumps(renamed), file_id))


def _migrate_v11_preflight(db: Any) -> None:
    # Pre-flight (teleport_sync.preflight): one result per file, for the version whose
    # fingerprint it names (a changed file is checked again); its approval (`approve` of a
    # pre-flight hold) belongs to that version too. `report` is the JSON `status` shows;
    # `summary` its reasons in one sentence (for hold reasons). `preflight_frames`: small JPEGs
    # of the worst frames, for the console. Both go with their file row (ON DELETE CASCADE).
    db.execute(
        """CREATE TABLE preflight (
               file_id INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
               fingerprint TEXT NOT NULL,
               verdict TEXT NOT NULL,
               summary TEXT,
               report TEXT NOT NULL,
               checked_at TEXT NOT NULL,
               approved_at TEXT)"""
    )
    db.execute(
        """CREATE TABLE preflight_frames (
               file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
               rank INTEGER NOT NULL,
               name TEXT NOT NULL,
               jpeg BLOB NOT NULL,
               PRIMARY KEY (file_id, rank))"""
    )


def _migrate_teleport_posed(db: Any) -> None:
    # What Teleport did with the frames (metadata v2's camera list read against the input):
    # JSON {posed, frames, left_out, matched, kind}, beside pre-flight's verdict so the two can
    # be compared (`Journal.outcomes`). Only if absent: other branches add columns too.
    if "teleport_posed" not in db["files"].columns_dict:
        db.execute("ALTER TABLE files ADD COLUMN teleport_posed TEXT")


def _migrate_duplicates(db: Any) -> None:
    # The same bytes as a file already uploaded (`[upload] duplicates`): the sentence naming the
    # earlier file and its capture, and when `approve` (or the "warn" mode) let it go. Both are
    # for the version named by `control_fingerprint`, like a budget hold. Only if absent.
    columns = db["files"].columns_dict
    for column in ("duplicate_reason", "duplicate_approved_at"):
        if column not in columns:
            db.execute(f"ALTER TABLE files ADD COLUMN {column} TEXT")


def _migrate_listing(db: Any) -> None:
    # A year-old account (issue 32): a followed capture the listing no longer shows is said in
    # `status`: since when it is missing, and when a full walk of the listing last confirmed it.
    # Idempotent (other migrations land beside this one).
    columns = {c.name for c in db["files"].columns}
    for name in ("unlisted_since", "unlisted_confirmed_at"):
        if name not in columns:
            db.execute(f"ALTER TABLE files ADD COLUMN {name} TEXT")
    # A busy station's year (50,000 rows): forgetting a row deleted its events by a scan of all
    # events (O(rows) per row), and the finished rows are told apart by upload state.
    db.execute("CREATE INDEX IF NOT EXISTS idx_events_file_id ON events (file_id)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_files_upload_state ON files (upload_state)")


# Index i moves the schema from version i to i + 1. Append; never edit a released entry.
MIGRATIONS: list[Callable[[Any], None]] = [
    _migrate_v1,
    _migrate_v2,
    _migrate_v3_sightings,
    _migrate_v4_intent_token,
    _migrate_v5_events,
    _migrate_v6_control,
    _migrate_v7_results,
    _migrate_v8_discards,
    _migrate_v9_lifecycle,
    _migrate_v10_failed_actions,
    _migrate_v11_preflight,
    _migrate_teleport_posed,
    _migrate_duplicates,
    _migrate_listing,
]
SCHEMA_VERSION = len(MIGRATIONS)
