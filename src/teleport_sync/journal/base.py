"""The journal's connection: opening, integrity, migration, transactions, and the plumbing
every part of the journal shares (errors, times, how text and paths are stored and shown).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from ..logging import REDACTOR, printable
from ..models import FileIdentity
from ..private import private_dirs, private_file, tighten_path
from ..timestamps import utc_now
from .records import FileRecord
from .schema import MIGRATIONS, SCHEMA_VERSION
from .states import UploadState

__all__ = ["utc_now"]  # re-exported: the journal's time format (timestamps.py)


class JournalError(Exception):
    """The journal cannot be opened or written; the message names the file and the fix."""


class JournalRowError(JournalError):
    """One file's row cannot be read; the message says how to start that file over."""


class StaleCapture(Exception):
    """A write about capture `eid` for a row that no longer has it: its file started over (a
    new version, a new capture) while the write was on its way. Nothing was written."""

    def __init__(self, file_id: int, eid: str) -> None:
        super().__init__(f"file {file_id} no longer has capture {eid}: it started over")
        self.file_id, self.eid = file_id, eid


class FileReplaced(StaleCapture):
    """The file on disk is not the version capture `eid` was made of (rewritten or replaced
    after its upload): the row has just started over as a new version, and no act of the old
    capture (model, move, hook, notification) may touch the new bytes."""

    def __init__(self, file_id: int, eid: str, why: str) -> None:
        super().__init__(file_id, eid)
        self.args = (why,)
        self.why = why


class UnreadableRow(Exception):
    """A journal row holds text that is not UTF-8 where only UTF-8 can be used."""

    def __init__(self, file_id: int, path: str, column: str) -> None:
        super().__init__(file_id, path, column)
        self.file_id, self.path, self.column = file_id, path, column


def shown(text: str) -> str:
    """`text` as it can be shown and stored as UTF-8: bytes that are not UTF-8 (a file name
    from an old camera, say) appear as `\\xe9` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def recorded(text: str) -> str:
    """Free text as the journal records it (errors, reasons, notes, events): the one point
    every such text passes before it is stored, so `status`, `health`, the console,
    notifications and hooks (which read it from here) never get what it held raw. Secrets are
    masked (`logging.REDACTOR`: the configured secrets, every issued token, bearer and
    presigned-URL patterns), control characters escaped (`logging.printable`: a server's text
    is data) and bytes that are not UTF-8 shown as escapes."""
    return shown(printable(REDACTOR.redact(text)))


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


def _identity_columns(identity: FileIdentity) -> tuple[int, int, int, int, str]:
    """The files table's identity columns, in their order: dev, inode, size, mtime_ns, print."""
    return (identity.dev, identity.inode, identity.size, identity.mtime_ns, identity.fingerprint)


class BaseJournal:
    """One connection, guarded by a lock: the engine's worker threads share it.

    The connection, its transactions, the schema's migration, and the helpers every concern
    (the mixins composed into `Journal`) uses: queries, events, facts, rows made records."""

    def __init__(
        self, path: Path, *, check_integrity: bool = True, quick_check: bool = False
    ) -> None:
        self.path = path
        try:
            private_dirs(path.parent)
            private_file(path)  # SQLite gives its -wal and -shm the journal's own mode
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
            for suffix in ("-wal", "-shm"):  # left by an older version, or made under umask 022
                tighten_path(path.with_name(path.name + suffix))
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if check_integrity:
                self._check_integrity("quick_check" if quick_check else "integrity_check")
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _check_integrity(self, pragma: str = "integrity_check") -> None:
        # quick_check: every page and record, not whether the indexes agree with the tables
        # (O(rows) too, but ~4x cheaper: for readers, which write nothing through an index).
        result = self._conn.execute(f"PRAGMA {pragma}").fetchone()[0]
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
            # sqlite3's decoding is C, ours (`_lenient_text`) a Python call per value (a second
            # at 50,000 rows): ours only when a value is not UTF-8 and the query is refused.
            self._conn.text_factory = str
            try:
                return list(self._conn.execute(sql, params))
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                self._conn.text_factory = _lenient_text
                return list(self._conn.execute(sql, params))
            finally:
                self._conn.text_factory = _lenient_text

    @staticmethod
    def _still_has(conn: sqlite3.Connection, file_id: int, eid: str | None) -> None:
        """Raise `StaleCapture` unless the row still has capture `eid` (None: no check), inside
        the caller's transaction, so the check and the write are one."""
        if eid is None:
            return
        row = conn.execute("SELECT eid FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None or row["eid"] != eid:
            raise StaleCapture(file_id, eid)

    def _event(self, conn: sqlite3.Connection, file_id: int | None, kind: str, msg: str) -> None:
        conn.execute(
            "INSERT INTO events (file_id, at, kind, message) VALUES (?, ?, ?, ?)",
            (file_id, utc_now(), kind, recorded(msg)),
        )

    @staticmethod
    def _discard_unfinished_capture(conn: sqlite3.Connection, file_id: int, why: str) -> None:
        """The row is about to lose its capture id: if that capture never completed, queue it
        for deletion from the account in the caller's transaction (`discarded_captures`)."""
        row = conn.execute(
            "SELECT eid, upload_state FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        if row is None or not row["eid"] or row["upload_state"] == UploadState.UPLOADED:
            return  # nothing to delete, or a finished capture: the user's model, kept
        conn.execute(
            "INSERT INTO discarded_captures (eid, file_id, reason, queued_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(eid) DO NOTHING",
            (row["eid"], file_id, recorded(why), utc_now()),
        )

    def add_event(self, file_id: int | None, kind: str, message: str) -> None:
        with self._transaction() as conn:
            self._event(conn, file_id, kind, message)

    def events(self, file_id: int) -> list[tuple[str, str]]:
        rows = self._query(
            "SELECT kind, message FROM events WHERE file_id = ? ORDER BY id", (file_id,)
        )
        return [(r["kind"], r["message"]) for r in rows]

    def change_marker(self) -> tuple[int, int]:
        """Differs from one call to the next if and only if the journal may have changed (by
        this connection or another process): readers skip recounting an unchanged journal."""
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), self._conn.total_changes

    def fact(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM facts WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_fact(self, key: str, value: str) -> None:
        # Facts are JSON of ours, but may quote an error (the authentication state): masked.
        value = REDACTOR.redact(value)
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

    # -- rows as records --------------------------------------------------------------------

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
            upload_state=UploadState(row["upload_state"]),
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
            result_dir=_py_path(row["result_dir"]) if row["result_dir"] is not None else None,
            teleport_posed=json.loads(row["teleport_posed"]) if row["teleport_posed"] else None,
            unlisted_since=row["unlisted_since"],
            unlisted_confirmed_at=row["unlisted_confirmed_at"],
        )

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
        # Outside `states.MOVES` on purpose: a damaged row is taken out of the state machine
        # from whatever state it claims, since that claim cannot be trusted.
        with self._transaction() as conn:
            conn.execute(
                """UPDATE files SET upload_state = ?, error = ?, updated_at = ?
                   WHERE id = ? AND (error IS NOT ? OR upload_state != ?)""",
                (
                    UploadState.REJECTED,
                    sentence,
                    utc_now(),
                    bad.file_id,
                    sentence,
                    UploadState.REJECTED,
                ),
            )
        return sentence
