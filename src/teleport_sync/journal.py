"""The SQLite journal: the truth about every file, part, ETag and capture state.

All SQL of the project lives here. The journal never stores an upload URL or a token: URLs are
credentials while valid and are always requested fresh.

Durability: WAL, `synchronous=FULL` (a committed part survives power loss), one transaction per
acknowledged part, `busy_timeout` so the CLI can read while the daemon writes, and
`PRAGMA integrity_check` at open. The schema is versioned with `PRAGMA user_version`; each entry
of `MIGRATIONS` moves it one version up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .models import FileIdentity

# The facts key that pause, resume and approve bump, so a running daemon notices them.
CONTROL_GENERATION = "control-generation"


class JournalError(Exception):
    """The journal cannot be opened or written; the message names the file and the fix."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
    upload_state: str
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


def shown(text: str) -> str:
    """`text` as it can be shown and stored as UTF-8: bytes that are not UTF-8 (a file name
    from an old camera, say) appear as `\\xe9` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shown_path(path: str) -> str:
    """A path as `status` shows it, and one shown text for one file: backslashes doubled, bytes
    that are not UTF-8 as `\\xNN` (so `caf\\xe9.zip` and a file literally named so differ)."""
    return shown(path.replace("\\", "\\\\"))


def _db_path(path: str) -> str | bytes:
    """A path as stored: text when it is UTF-8, else its exact bytes (a BLOB), so any name
    the OS allows is journaled losslessly."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _py_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _lenient_text(raw: bytes) -> str:
    # A damaged or hand-edited row may hold bytes that are not UTF-8: read it anyway (as
    # surrogate escapes, like os.fsdecode) so one bad row cannot stop every query.
    return raw.decode("utf-8", "surrogateescape")


class JournalRowError(JournalError):
    """One file's row cannot be read; the message says how to start that file over."""


class UnreadableRow(Exception):
    """A journal row holds text that is not UTF-8 where only UTF-8 can be used."""

    def __init__(self, file_id: int, path: str, column: str) -> None:
        super().__init__(file_id, path, column)
        self.file_id, self.path, self.column = file_id, path, column


def _identity_columns(identity: FileIdentity) -> tuple[int, int, int, int, str]:
    """The files table's identity columns, in their order: dev, inode, size, mtime_ns, print."""
    return (identity.dev, identity.inode, identity.size, identity.mtime_ns, identity.fingerprint)


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


# Index i moves the schema from version i to i + 1. Append; never edit a released entry.
MIGRATIONS: list[Callable[[Any], None]] = [
    _migrate_v1,
    _migrate_v2,
    _migrate_v3_sightings,
    _migrate_v4_intent_token,
    _migrate_v5_events,
    _migrate_v6_control,
    _migrate_v7_results,
]
SCHEMA_VERSION = len(MIGRATIONS)


_FORGET_RESULTS = """UPDATE files SET results_by_profile = '{}', preview_paths = '[]',
    result_error = NULL, result_attempts = 0, result_next_at = NULL, viewer_url = NULL
    WHERE id = ?"""


class Journal:
    """One connection, guarded by a lock: the engine's worker threads share it."""

    def __init__(self, path: Path, *, check_integrity: bool = True) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot open the journal {path}: {exc}; check [journal] path and that the "
                "folder is writable"
            ) from exc
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self._conn.text_factory = _lenient_text
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if check_integrity:
                self._check_integrity()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(
                f"the journal {path} is not a usable SQLite database ({exc}); move it aside "
                "to start a new one (uploads in progress will then start over)"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _check_integrity(self) -> None:
        result = self._conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise JournalError(
                f"the journal {self.path} failed its integrity check ({result}); move it aside "
                "to start a new one, or restore it from a backup"
            )

    def check_writable(self) -> None:
        """Write the journal's header once, so a writer that cannot write fails at start."""
        try:
            with self._transaction() as conn:
                conn.execute(f"PRAGMA user_version = {self.schema_version}")
        except JournalError as exc:
            raise JournalError(
                f"cannot write the journal {self.path} ({exc.__cause__}); make it and its folder "
                "writable by the user teleport-sync runs as, or set [journal] path elsewhere"
            ) from None

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        while True:
            with self._transaction():
                # Read inside the write lock: another process (the CLI beside the daemon) may
                # have migrated while we waited for it.
                version = self.schema_version
                if version > SCHEMA_VERSION:
                    raise JournalError(
                        f"the journal {self.path} has schema version {version}, newer than this "
                        f"teleport-sync understands ({SCHEMA_VERSION}); upgrade teleport-sync"
                    )
                if version == SCHEMA_VERSION:
                    return
                # sqlite-utils builds the schema; imported only when there is one to build
                # (70 ms that every CLI start would otherwise pay).
                import sqlite_utils

                MIGRATIONS[version](sqlite_utils.Database(self._conn))
                # PRAGMA takes no parameters; `version` is our own integer.
                self._conn.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error; serialised across threads."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._write_error(exc) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._write_error(exc) from exc
                raise

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back on its own when the connection cannot

    def _write_error(self, exc: sqlite3.Error) -> JournalError:
        return JournalError(
            f"cannot write the journal {self.path}: {exc}; is the disk full or the file "
            "read-only? Nothing acknowledged is lost: work resumes once it can be written"
        )

    def _query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params))

    def _event(self, conn: sqlite3.Connection, file_id: int | None, kind: str, msg: str) -> None:
        conn.execute(
            "INSERT INTO events (file_id, at, kind, message) VALUES (?, ?, ?, ?)",
            (file_id, utc_now(), kind, shown(msg)),
        )

    @staticmethod
    def _record(row: sqlite3.Row) -> FileRecord:
        path = _py_path(row["path"])
        for column in row.keys():  # noqa: SIM118 (sqlite3.Row has keys(), not iteration of them)
            value = row[column]
            # (A path that is not UTF-8 is stored as bytes, never as text: such text is damage.)
            if column != "error" and isinstance(value, str) and shown(value) != value:
                raise UnreadableRow(row["id"], path, column)
        return FileRecord(
            id=row["id"],
            path=path,
            identity=FileIdentity(
                row["dev"], row["inode"], row["size"], row["mtime_ns"], row["fingerprint"]
            ),
            input_data_format=row["input_data_format"],
            name=row["name"],
            eid=row["eid"],
            sid=row["sid"],
            chunk_size=row["chunk_size"],
            num_parts=row["num_parts"],
            upload_state=row["upload_state"],
            capture_state=row["capture_state"],
            error=row["error"],
            intent_at=row["intent_at"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            result_paths=json.loads(row["result_paths"] or "[]"),
            actions_done=json.loads(row["actions_done"] or "[]"),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            intent_nonce=row["intent_nonce"],
            renamed_at=row["renamed_at"],
            results_by_profile=json.loads(row["results_by_profile"] or "{}"),
            preview_paths=json.loads(row["preview_paths"] or "[]"),
            result_error=row["result_error"],
            result_attempts=row["result_attempts"] or 0,
            result_next_at=row["result_next_at"],
            viewer_url=row["viewer_url"],
        )

    # -- files ------------------------------------------------------------------------------

    def get(self, file_id: int) -> FileRecord:
        rows = self._query("SELECT * FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise KeyError(file_id)
        return self._readable(rows[0])

    def by_path(self, path: str) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE path = ?", (_db_path(path),))
        return self._readable(rows[0]) if rows else None

    def _readable(self, row: sqlite3.Row) -> FileRecord:
        try:
            return self._record(row)
        except UnreadableRow as bad:
            raise JournalRowError(self._quarantine(bad)) from None

    def _records(self, rows: list[sqlite3.Row]) -> list[FileRecord]:
        """The rows as records; a row that cannot be read is failed (with the fix) and left out,
        so one bad row does not stop the others."""
        out = []
        for row in rows:
            try:
                out.append(self._record(row))
            except UnreadableRow as bad:
                self._quarantine(bad)
        return out

    def _quarantine(self, bad: UnreadableRow) -> str:
        sentence = (
            f"the journal's row for {shown(bad.path)} holds bytes that are not UTF-8 in its "
            f"{bad.column!r} column (a damaged or hand-edited journal), so this file is not "
            f"uploaded; to start it over, delete the row: sqlite3 {self.path} "
            f"'DELETE FROM parts WHERE file_id = {bad.file_id}; "
            f"DELETE FROM files WHERE id = {bad.file_id}'"
        )
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'rejected', error = ?, updated_at = ?
                   WHERE id = ? AND (error IS NOT ? OR upload_state != 'rejected')""",
                (sentence, utc_now(), bad.file_id, sentence),
            )
        return sentence

    def all_files(self) -> list[FileRecord]:
        return self._records(self._query("SELECT * FROM files ORDER BY id"))

    def unfinished(self) -> list[FileRecord]:
        """Files whose upload began and did not end: resume these first."""
        rows = self._query(
            "SELECT * FROM files WHERE upload_state IN ('pending', 'uploading') ORDER BY id"
        )
        return self._records(rows)

    def paths_of_inode(self, dev: int, inode: int) -> list[str]:
        """Paths journaled (and not rejected) for this inode: hard links and symlinks of one
        file reach it by more than one path."""
        rows = self._query(
            """SELECT path FROM files WHERE dev = ? AND inode = ?
               AND upload_state != 'rejected' ORDER BY id""",
            (dev, inode),
        )
        return [_py_path(r["path"]) for r in rows]

    def known_eids(self) -> set[str]:
        return {r["eid"] for r in self._query("SELECT eid FROM files WHERE eid IS NOT NULL")}

    def register(
        self, path: str, identity: FileIdentity, input_data_format: str, name: str
    ) -> FileRecord:
        """The row for `path`, created as `pending` if new. An existing row is left as it is."""
        now = utc_now()
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO files (path, dev, inode, size, mtime_ns, fingerprint,
                       input_data_format, name, upload_state, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
                   ON CONFLICT(path) DO NOTHING""",
                (_db_path(path), *_identity_columns(identity), input_data_format, name, now, now),
            )
        record = self.by_path(path)
        assert record is not None
        return record

    def restart(
        self, file_id: int, identity: FileIdentity, input_data_format: str, name: str, why: str
    ) -> FileRecord:
        """Start this path over as a new file version: forget the capture, parts and states."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
            conn.execute(
                """UPDATE files SET dev = ?, inode = ?, size = ?, mtime_ns = ?, fingerprint = ?,
                       input_data_format = ?, name = ?, eid = NULL, sid = NULL,
                       chunk_size = NULL, num_parts = NULL, upload_state = 'pending',
                       capture_state = NULL, error = NULL, intent_at = NULL,
                       intent_nonce = NULL, renamed_at = NULL, attempts = 0,
                       next_attempt_at = NULL, result_paths = '[]', actions_done = '[]',
                       updated_at = ?
                   WHERE id = ?""",
                (*_identity_columns(identity), input_data_format, name, utc_now(), file_id),
            )
            conn.execute("DELETE FROM state_history WHERE file_id = ?", (file_id,))
            conn.execute(_FORGET_RESULTS, (file_id,))
            self._event(conn, file_id, "restarted", why)
        return self.get(file_id)

    def mark_create_intent(self, file_id: int, token: str) -> str:
        """Journal that a capture carrying `token` is about to be created, before the POST.

        A token already journaled for this row is kept (a retried create is the same intent, and
        a late capture from an earlier try must carry the token the sweeps look for); the token
        in force is returned.
        """
        at = utc_now()
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'uploading', intent_at = ?, error = NULL,
                       intent_nonce = COALESCE(intent_nonce, ?), updated_at = ? WHERE id = ?""",
                (at, token, at, file_id),
            )
            row = conn.execute("SELECT intent_nonce FROM files WHERE id = ?", (file_id,)).fetchone()
        return str(row["intent_nonce"])

    def mark_renamed(self, file_id: int, name: str) -> None:
        """The capture now carries its final name (no token): nothing left to rename."""
        now = utc_now()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE files SET renamed_at = ?, updated_at = ? WHERE id = ?", (now, now, file_id)
            )
            self._event(conn, file_id, "renamed", name)

    def pending_renames(self) -> list[FileRecord]:
        """Uploaded captures still named with their intent's token: rename them."""
        rows = self._query(
            """SELECT * FROM files WHERE upload_state = 'uploaded' AND eid IS NOT NULL
               AND intent_nonce IS NOT NULL AND renamed_at IS NULL ORDER BY id"""
        )
        return self._records(rows)

    def record_created(self, file_id: int, eid: str, chunk_size: int, num_parts: int) -> None:
        """The server's answer to create, in one transaction."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET eid = ?, chunk_size = ?, num_parts = ?,
                       upload_state = 'uploading', updated_at = ? WHERE id = ?""",
                (eid, chunk_size, num_parts, utc_now(), file_id),
            )
            self._event(conn, file_id, "created", f"capture {eid}, {num_parts} part(s)")

    def mark_uploading(self, file_id: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'uploading', error = NULL, updated_at = ?
                   WHERE id = ?""",
                (utc_now(), file_id),
            )

    def mark_uploaded(self, file_id: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'uploaded', error = NULL, attempts = 0,
                       next_attempt_at = NULL, updated_at = ? WHERE id = ?""",
                (utc_now(), file_id),
            )

    def mark_failed(self, file_id: int, error: str, next_attempt_at: str | None = None) -> None:
        """A failure worth retrying later (network, server, permissions the user can fix)."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'failed', error = ?, attempts = attempts + 1,
                       next_attempt_at = ?, updated_at = ? WHERE id = ?""",
                (shown(error), next_attempt_at, utc_now(), file_id),
            )
            self._event(conn, file_id, "failed", error)

    def mark_rejected(self, file_id: int, error: str) -> None:
        """The input itself is unusable: not retried until the file changes."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = 'rejected', error = ?, updated_at = ?
                   WHERE id = ?""",
                (shown(error), utc_now(), file_id),
            )
            self._event(conn, file_id, "rejected", error)

    def add_event(self, file_id: int | None, kind: str, message: str) -> None:
        with self._transaction() as conn:
            self._event(conn, file_id, kind, message)

    def events(self, file_id: int) -> list[tuple[str, str]]:
        rows = self._query(
            "SELECT kind, message FROM events WHERE file_id = ? ORDER BY id", (file_id,)
        )
        return [(r["kind"], r["message"]) for r in rows]

    def quick_index(self) -> dict[str, tuple[int, int, int, int]]:
        """path -> (dev, inode, size, mtime_ns) of every file, in one query (startup scan)."""
        rows = self._query("SELECT path, dev, inode, size, mtime_ns FROM files")
        return {_py_path(r["path"]): (r["dev"], r["inode"], r["size"], r["mtime_ns"]) for r in rows}

    def set_next_attempt(self, file_id: int, at: str | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE files SET next_attempt_at = ? WHERE id = ?", (at, file_id))

    def due_retries(self, now: str) -> list[FileRecord]:
        """Failed files whose next attempt is due."""
        rows = self._query(
            """SELECT * FROM files WHERE upload_state = 'failed'
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id""",
            (now,),
        )
        return self._records(rows)

    def awaiting_result(self) -> list[FileRecord]:
        """Uploaded files whose capture is not terminal yet: what the poller follows."""
        rows = self._query(
            """SELECT * FROM files WHERE upload_state = 'uploaded' AND eid IS NOT NULL
               AND (capture_state IS NULL
                    OR UPPER(capture_state) NOT IN ('READY', 'FAILED', 'ERROR', 'DELETED'))
               ORDER BY id"""
        )
        return self._records(rows)

    def terminal(self) -> list[FileRecord]:
        rows = self._query(
            "SELECT * FROM files WHERE UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR') "
            "ORDER BY id"
        )
        return self._records(rows)

    def mark_action(self, file_id: int, action: str, result_paths: list[str] | None = None) -> None:
        """Record that `action` ran (or began, for actions that must never run twice)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT actions_done, result_paths FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            done = json.loads(row["actions_done"] or "[]")
            if action not in done:
                done.append(action)
            paths = json.loads(row["result_paths"] or "[]")
            for path in result_paths or []:
                if path not in paths:
                    paths.append(path)
            conn.execute(
                "UPDATE files SET actions_done = ?, result_paths = ?, updated_at = ? WHERE id = ?",
                (json.dumps(done), json.dumps(paths), utc_now(), file_id),
            )
            self._event(conn, file_id, "action", action)

    def record_results(
        self, file_id: int, by_profile: dict[str, list[str]], previews: list[str]
    ) -> None:
        """The models (and previews) are on disk: keep where, clear any download error."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET results_by_profile = ?, preview_paths = ?, result_error = NULL,
                       result_attempts = 0, result_next_at = NULL, updated_at = ? WHERE id = ?""",
                (json.dumps(by_profile), json.dumps(previews), utc_now(), file_id),
            )

    def record_result_error(self, file_id: int, error: str, next_at: str | None) -> None:
        """A download failed: why, one more attempt counted, and when to try again."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET result_error = ?, result_attempts = result_attempts + 1,
                       result_next_at = ?, updated_at = ? WHERE id = ?""",
                (error, next_at, utc_now(), file_id),
            )
            self._event(conn, file_id, "result_error", error)

    def record_viewer_url(self, file_id: int, url: str | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE files SET viewer_url = ? WHERE id = ?", (url, file_id))

    def update_location(self, file_id: int, path: str, identity: FileIdentity) -> None:
        """The input was moved (done_dir / failed_dir): follow it, so it is not seen as new."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET path = ?, dev = ?, inode = ?, size = ?, mtime_ns = ?,
                       updated_at = ? WHERE id = ?""",
                (
                    _db_path(path),
                    identity.dev,
                    identity.inode,
                    identity.size,
                    identity.mtime_ns,
                    utc_now(),
                    file_id,
                ),
            )
            self._event(conn, file_id, "moved", shown(path))

    def reject(
        self, path: str, identity: FileIdentity, input_data_format: str, name: str, error: str
    ) -> FileRecord:
        """Journal a file that will not be uploaded as it is, with the sentence why."""
        record = self.register(path, identity, input_data_format, name)
        if record.identity != identity:
            record = self.restart(record.id, identity, input_data_format, name, "changed")
        self.mark_rejected(record.id, error)
        return self.get(record.id)

    def capture_counts(self) -> dict[str, int]:
        rows = self._query(
            "SELECT capture_state, COUNT(*) AS n FROM files WHERE capture_state IS NOT NULL "
            "GROUP BY capture_state"
        )
        return {r["capture_state"]: r["n"] for r in rows}

    def counts_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT upload_state, COUNT(*) AS n FROM files GROUP BY upload_state")
        return {r["upload_state"]: r["n"] for r in rows}

    def fact(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM facts WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_fact(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO facts (key, value, learned_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "learned_at = excluded.learned_at",
                (key, value, utc_now()),
            )

    def delete_fact(self, key: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM facts WHERE key = ?", (key,))

    # -- operator control: pause, budgets, what an input holds ---------------------------

    def paused_paths(self) -> list[str]:
        """Paths and folders paused by `pause` ("*" = everything)."""
        return [r["path"] for r in self._query("SELECT path FROM paused ORDER BY path")]

    def set_paused(self, paths: list[str], paused: bool) -> None:
        """Pause (or resume) `paths`; resuming "*" resumes everything. Bumps the generation."""
        now = utc_now()
        with self._transaction() as conn:
            if paused:
                conn.executemany(
                    "INSERT INTO paused (path, paused_at) VALUES (?, ?) "
                    "ON CONFLICT(path) DO NOTHING",
                    [(p, now) for p in paths],
                )
            elif "*" in paths:
                conn.execute("DELETE FROM paused")
            else:
                conn.executemany("DELETE FROM paused WHERE path = ?", [(p,) for p in paths])
            self._bump_control(conn)
            self._event(conn, None, "paused" if paused else "resumed", " ".join(paths))

    def control_generation(self) -> int:
        """Changes whenever pause, resume or approve does: a running daemon watches it."""
        return int(self.fact(CONTROL_GENERATION) or 0)

    def _bump_control(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO facts (key, value, learned_at) VALUES (?, '1', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
            "learned_at = excluded.learned_at",
            (CONTROL_GENERATION, utc_now()),
        )

    def control_facts(self, file_id: int) -> dict[str, Any]:
        """frames, duration_seconds, estimated_cost, held_reason, approved_at, budget_day and
        the fingerprint they belong to (all None until the input was looked at)."""
        rows = self._query(
            "SELECT frames, duration_seconds, estimated_cost, held_reason, approved_at, "
            "budget_day, control_fingerprint FROM files WHERE id = ?",
            (file_id,),
        )
        if not rows:
            raise KeyError(file_id)
        return dict(rows[0])

    def set_input_facts(
        self,
        file_id: int,
        fingerprint: str,
        frames: int | None,
        duration_seconds: float | None,
        estimated_cost: float | None,
    ) -> None:
        """What a new version of the input holds; forgets the old version's hold and count."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET frames = ?, duration_seconds = ?, estimated_cost = ?,
                       held_reason = NULL, approved_at = NULL, budget_day = NULL,
                       control_fingerprint = ? WHERE id = ?""",
                (frames, duration_seconds, estimated_cost, fingerprint, file_id),
            )

    def approve(self, file_id: int) -> None:
        """Release a held file: it is uploaded whatever the budget says."""
        now = utc_now()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE files SET held_reason = NULL, approved_at = ?, updated_at = ? WHERE id = ?",
                (now, now, file_id),
            )
            self._bump_control(conn)
            self._event(conn, file_id, "approved", "released from its budget hold")

    def day_usage(self, day: str) -> tuple[int, int]:
        """(frames, captures) counted on UTC `day` (YYYY-MM-DD)."""
        rows = self._query("SELECT frames, captures FROM budget_days WHERE day = ?", (day,))
        return (rows[0]["frames"], rows[0]["captures"]) if rows else (0, 0)

    def admit_within_budget(
        self, file_id: int, day: str, frames: int, check: Callable[[int, int], str | None]
    ) -> str | None:
        """Count the file against UTC `day`'s budget, or hold it: atomically, so two uploads
        starting together cannot both take the last of a budget.

        `check(frames_today, captures_today)` says why one more capture does not fit (or None).
        A file already counted (this version) or approved is counted without asking. Returns
        the hold's reason, or None when the file may go.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT budget_day, approved_at FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            if row["budget_day"] is not None:
                return None
            usage = conn.execute(
                "SELECT frames, captures FROM budget_days WHERE day = ?", (day,)
            ).fetchone()
            problem = None if row["approved_at"] else check(*(usage or (0, 0)))
            if problem is not None:
                conn.execute(
                    "UPDATE files SET held_reason = ?, updated_at = ? WHERE id = ?",
                    (problem, utc_now(), file_id),
                )
                self._event(conn, file_id, "held", problem)
                return problem
            conn.execute(
                "INSERT INTO budget_days (day, frames, captures) VALUES (?, ?, 1) "
                "ON CONFLICT(day) DO UPDATE SET frames = frames + excluded.frames, "
                "captures = captures + 1",
                (day, frames),
            )
            conn.execute(
                "UPDATE files SET budget_day = ?, held_reason = NULL WHERE id = ?", (day, file_id)
            )
        return None

    # -- parts ------------------------------------------------------------------------------

    def record_part(self, file_id: int, number: int, size: int, md5: str, etag: str) -> None:
        """One acknowledged part, durably, before anything else happens."""
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO parts (file_id, number, size, md5, etag, acknowledged_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(file_id, number) DO UPDATE SET size = excluded.size,
                       md5 = excluded.md5, etag = excluded.etag,
                       acknowledged_at = excluded.acknowledged_at""",
                (file_id, number, size, md5, etag, utc_now()),
            )

    def parts(self, file_id: int) -> dict[int, PartRecord]:
        rows = self._query("SELECT * FROM parts WHERE file_id = ? ORDER BY number", (file_id,))
        return {
            r["number"]: PartRecord(
                r["number"], r["size"], r["md5"], r["etag"], r["acknowledged_at"]
            )
            for r in rows
        }

    def forget_parts(self, file_id: int, why: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
            self._event(conn, file_id, "parts-forgotten", why)

    # -- capture states ---------------------------------------------------------------------

    def record_state(
        self, file_id: int, state: str, sid: str | None = None, *, source: str | None = None
    ) -> bool:
        """Append `state` to the history if it differs from the last one; keep `sid`.

        `source` says how it was heard (`poll`, `webhook`)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT capture_state, eid, sid FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            changed = row["capture_state"] != state
            now = utc_now()
            if changed:
                conn.execute(
                    "INSERT INTO state_history (file_id, eid, state, observed_at, source) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (file_id, row["eid"], state, now, source),
                )
                conn.execute(
                    "UPDATE files SET capture_state = ?, updated_at = ? WHERE id = ?",
                    (state, now, file_id),
                )
            if sid is not None and sid != row["sid"]:
                conn.execute("UPDATE files SET sid = ? WHERE id = ?", (sid, file_id))
        return changed

    def record_capture_error(self, file_id: int, reason: str) -> None:
        """Why the server failed the capture (its error reason slug), in the row's `error`."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE files SET error = ?, updated_at = ? WHERE id = ?",
                (shown(reason), utc_now(), file_id),
            )

    def state_history(self, file_id: int) -> list[dict[str, str | None]]:
        rows = self._query(
            "SELECT state, observed_at, source FROM state_history WHERE file_id = ? ORDER BY id",
            (file_id,),
        )
        return [
            {"state": r["state"], "observed_at": r["observed_at"], "source": r["source"]}
            for r in rows
        ]

    # -- notifications outbox ---------------------------------------------------------------

    def by_eid(self, eid: str) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE eid = ? ORDER BY id DESC LIMIT 1", (eid,))
        return self._record(rows[0]) if rows else None

    def needing_notification(self) -> list[FileRecord]:
        """Captures that ended and files rejected whose notification is not queued yet."""
        rows = self._query(
            """SELECT * FROM files WHERE (upload_state = 'rejected'
                   OR UPPER(capture_state) IN ('READY', 'FAILED', 'ERROR'))
               AND NOT EXISTS (SELECT 1 FROM json_each(files.actions_done)
                               WHERE json_each.value = 'notify')
               ORDER BY id"""
        )
        return [self._record(r) for r in rows]

    def enqueue_notification(
        self, file_id: int | None, event_id: str, kind: str, payload: str, targets: list[str]
    ) -> int:
        """Queue one event for each target, once per event id; with a file, mark it notified.

        One transaction: a crash leaves either the queued rows and the mark, or neither."""
        now = utc_now()
        added = 0
        with self._transaction() as conn:
            for target in targets:
                cursor = conn.execute(
                    """INSERT INTO outbox (event_id, target, kind, payload, created_at,
                           attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)
                       ON CONFLICT(event_id, target) DO NOTHING""",
                    (event_id, target, kind, payload, now, now),
                )
                added += cursor.rowcount
            if file_id is not None:
                row = conn.execute(
                    "SELECT actions_done FROM files WHERE id = ?", (file_id,)
                ).fetchone()
                done = json.loads(row["actions_done"] or "[]") if row else []
                if row and "notify" not in done:
                    done.append("notify")
                    conn.execute(
                        "UPDATE files SET actions_done = ? WHERE id = ?",
                        (json.dumps(done), file_id),
                    )
        return added

    @staticmethod
    def _outbox_row(row: sqlite3.Row) -> OutboxRow:
        return OutboxRow(**{key: row[key] for key in row.keys()})  # noqa: SIM118

    def outbox(self) -> list[OutboxRow]:
        return [self._outbox_row(r) for r in self._query("SELECT * FROM outbox ORDER BY rowid")]

    def due_notifications(self, now: str, limit: int = 50) -> list[OutboxRow]:
        rows = self._query(
            """SELECT * FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL
               AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?""",
            (now, limit),
        )
        return [self._outbox_row(r) for r in rows]

    def pending_notifications(self) -> int:
        rows = self._query(
            "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"
        )
        return int(rows[0]["n"])

    def next_notification_at(self) -> str | None:
        rows = self._query(
            """SELECT MIN(next_attempt_at) AS at FROM outbox
               WHERE delivered_at IS NULL AND given_up_at IS NULL"""
        )
        return rows[0]["at"] if rows else None

    def notification_done(
        self, event_id: str, target: str, *, delivered: bool, error: str | None = None
    ) -> None:
        """Delivered, or given up on (with the last error)."""
        column = "delivered_at" if delivered else "given_up_at"
        with self._transaction() as conn:
            # `column` is one of two names chosen above, never input.
            conn.execute(
                f"UPDATE outbox SET {column} = ?, attempts = attempts + 1, last_error = ? "
                "WHERE event_id = ? AND target = ?",
                (utc_now(), error, event_id, target),
            )

    def notification_retry(self, event_id: str, target: str, error: str, at: str) -> None:
        """One failed attempt; the target's other pending events wait until `at` as well."""
        with self._transaction() as conn:
            conn.execute(
                """UPDATE outbox SET attempts = attempts + 1, last_error = ?,
                       next_attempt_at = ? WHERE event_id = ? AND target = ?""",
                (error, at, event_id, target),
            )
            conn.execute(
                """UPDATE outbox SET next_attempt_at = ? WHERE target = ?
                   AND delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at < ?""",
                (at, target, at),
            )

    # -- sightings: noticed, not yet handed over ---------------------------------------------

    def note_sighting(self, path: str, root: str, reason: str) -> None:
        """`path` was noticed: a `settling` row, unless it already has one."""
        self.note_sightings([path], root, reason)

    def note_sightings(self, paths: list[str], root: str, reason: str) -> None:
        """Sightings for many paths in one transaction (a scan may find thousands)."""
        if not paths:
            return
        now = utc_now()
        with self._transaction() as conn:
            conn.executemany(
                """INSERT INTO sightings (path, root, stage, reason, first_seen_at, updated_at)
                   VALUES (?, ?, 'settling', ?, ?, ?) ON CONFLICT(path) DO NOTHING""",
                [(_db_path(path), shown(root), shown(reason), now, now) for path in paths],
            )

    def mark_incomplete(self, path: str, root: str, size: int, mtime_ns: int, reason: str) -> str:
        """`path` is not complete yet; returns since when it has been so, unchanged.

        The time is kept while size and mtime stay the same, across restarts too: a writer that
        makes progress resets it, a restart does not.
        """
        now = utc_now()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT size, mtime_ns, incomplete_since FROM sightings WHERE path = ?",
                (_db_path(path),),
            ).fetchone()
            same = row is not None and (row["size"], row["mtime_ns"]) == (size, mtime_ns)
            since = row["incomplete_since"] if same and row["incomplete_since"] else now
            conn.execute(
                """INSERT INTO sightings (path, root, stage, reason, size, mtime_ns,
                       first_seen_at, incomplete_since, updated_at)
                   VALUES (?, ?, 'incomplete', ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET stage = 'incomplete', reason = excluded.reason,
                       size = excluded.size, mtime_ns = excluded.mtime_ns,
                       incomplete_since = excluded.incomplete_since,
                       updated_at = excluded.updated_at""",
                (_db_path(path), shown(root), shown(reason), size, mtime_ns, now, since, now),
            )
        return since

    def drop_sighting(self, path: str) -> None:
        """`path` was handed over, rejected, ignored or is gone: its sighting ends."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM sightings WHERE path = ?", (_db_path(path),))

    def sighting_paths(self) -> list[str]:
        return [
            _py_path(r["path"]) for r in self._query("SELECT path FROM sightings ORDER BY path")
        ]

    def known_paths(self) -> list[str]:
        """Every path with a row (files and sightings), as the OS names it (any bytes)."""
        rows = self._query("SELECT path FROM files UNION SELECT path FROM sightings")
        return [_py_path(r["path"]) for r in rows]

    def forget_paths(self, paths: list[str]) -> int:
        """Drop these paths' rows (file, parts, states, events, sighting); returns how many."""
        dropped = 0
        with self._transaction() as conn:
            for path in map(_db_path, paths):
                row = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
                if row is not None:
                    for table in ("parts", "state_history", "events"):
                        conn.execute(f"DELETE FROM {table} WHERE file_id = ?", (row["id"],))
                    conn.execute("DELETE FROM files WHERE id = ?", (row["id"],))
                gone = conn.execute("DELETE FROM sightings WHERE path = ?", (path,)).rowcount
                dropped += int(row is not None or gone > 0)
            self._event(conn, None, "forgotten", f"{dropped} row(s)")
        return dropped

    def mark_capture_deleted(self, eid: str) -> list[str]:
        """`captures delete` removed this capture: say so in its rows; returns their paths."""
        rows = self._query("SELECT id, path, upload_state FROM files WHERE eid = ?", (eid,))
        for row in rows:
            if row["upload_state"] == "uploaded":
                self.record_state(row["id"], "DELETED", source="user")
            self.add_event(row["id"], "capture-deleted", f"capture {eid} deleted by the user")
        return [r["path"] for r in rows]

    # -- reporting --------------------------------------------------------------------------

    def report_rows(self) -> list[dict[str, Any]]:
        """Raw facts for the status report: every file and every sighting, in three queries.

        Each dict has the files table's columns plus `parts_done`, `state_history` and
        `sighting` (the sighting's stage, reason and times, or None); sightings of paths with no
        file row come as dicts with only `path` and `sighting` set.
        """
        files = self._query(
            """SELECT f.*, (SELECT COUNT(*) FROM parts p WHERE p.file_id = f.id) AS parts_done
               FROM files f ORDER BY f.id"""
        )
        history: dict[int, list[dict[str, str | None]]] = {}
        for r in self._query(
            "SELECT file_id, state, observed_at, source FROM state_history ORDER BY id"
        ):
            history.setdefault(r["file_id"], []).append(
                {"state": r["state"], "observed_at": r["observed_at"], "source": r["source"]}
            )
        sightings = {
            _py_path(r["path"]): {**dict(r), "path": _py_path(r["path"])}
            for r in self._query("SELECT * FROM sightings")
        }
        out: list[dict[str, Any]] = []
        for row in files:
            item = dict(row)
            item["path"] = _py_path(row["path"])
            item["state_history"] = history.get(row["id"], [])
            item["result_paths"] = json.loads(row["result_paths"] or "[]")
            item["actions_done"] = json.loads(row["actions_done"] or "[]")
            item["results_by_profile"] = json.loads(row["results_by_profile"] or "{}")
            item["preview_paths"] = json.loads(row["preview_paths"] or "[]")
            item["sighting"] = sightings.pop(item["path"], None)
            out.append(item)
        for path, sighting in sorted(sightings.items()):
            out.append({"path": path, "sighting": sighting})
        return out
