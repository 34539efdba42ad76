"""Files: one row per path, its identity, and its upload state from register to uploaded."""

from __future__ import annotations

import sqlite3

from ..models import FileIdentity
from .base import (
    BaseJournal,
    FileReplaced,
    _db_path,
    _identity_columns,
    _py_path,
    recorded,
    shown,
    utc_now,
)
from .captures import observe_in
from .records import FileRecord
from .results import _FORGET_RESULTS
from .states import NEW_VERSION, Source, UploadState, check_move, judge_version

# Each transition below checks the row's current state against `states.MOVES` in the same
# transaction that moves it (`_move`), so the state machine has this one owner.


class FilesMixin(BaseJournal):
    """Finding, registering, restarting and moving files; the upload state's transitions."""

    def get(self, file_id: int) -> FileRecord:
        rows = self._query("SELECT * FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise KeyError(file_id)
        return self._readable(rows[0])

    def by_path(self, path: str) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE path = ?", (_db_path(path),))
        return self._readable(rows[0]) if rows else None

    def by_eid(self, eid: str) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE eid = ? ORDER BY id DESC LIMIT 1", (eid,))
        return self._record(rows[0]) if rows else None

    def all_files(self) -> list[FileRecord]:
        return self._records(self._query("SELECT * FROM files ORDER BY id"))

    def unfinished(self) -> list[FileRecord]:
        """Files whose upload began and did not end: resume these first."""
        rows = self._query(
            "SELECT * FROM files WHERE upload_state IN (?, ?, ?) ORDER BY id",
            (UploadState.PENDING, UploadState.UPLOADING, UploadState.WAITING),
        )
        return self._records(rows)

    def paths_of_inode(self, dev: int, inode: int) -> list[str]:
        """Paths journaled (and not rejected) for this inode: hard links and symlinks of one
        file reach it by more than one path."""
        rows = self._query(
            """SELECT path FROM files WHERE dev = ? AND inode = ?
               AND upload_state != ? ORDER BY id""",
            (dev, inode, UploadState.REJECTED),
        )
        return [_py_path(r["path"]) for r in rows]

    def known_eids(self) -> set[str]:
        return {r["eid"] for r in self._query("SELECT eid FROM files WHERE eid IS NOT NULL")}

    def quick_index(self) -> dict[str, tuple[int, int, int, int]]:
        """path -> (dev, inode, size, mtime_ns) of every file, in one query (startup scan)."""
        rows = self._query("SELECT path, dev, inode, size, mtime_ns FROM files")
        return {_py_path(r["path"]): (r["dev"], r["inode"], r["size"], r["mtime_ns"]) for r in rows}

    def register(
        self, path: str, identity: FileIdentity, input_data_format: str, name: str
    ) -> FileRecord:
        """The row for `path`, created as `pending` if new. An existing row is left as it is."""
        now = utc_now()
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO files (path, dev, inode, size, mtime_ns, fingerprint,
                       input_data_format, name, upload_state, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(path) DO NOTHING""",
                (
                    _db_path(path),
                    *_identity_columns(identity),
                    input_data_format,
                    name,
                    UploadState.PENDING,
                    now,
                    now,
                ),
            )
        record = self.by_path(path)
        assert record is not None
        return record

    def restart(
        self, file_id: int, identity: FileIdentity, input_data_format: str, name: str, why: str
    ) -> FileRecord:
        """Start this path over as a new file version: forget the capture, parts and states."""
        with self._transaction() as conn:
            self._restart_in(conn, file_id, identity, (input_data_format, name), why)
        return self.get(file_id)

    def confirm_version(
        self, file_id: int, eid: str | None, on_disk: FileIdentity | None, act: str
    ) -> FileRecord:
        """Before `act` on the file of capture `eid`: is the file still the version the capture
        holds (`states.judge_version`)? The row as it is when it is (or the file is gone);
        when it is not, the row starts over as a new version in this same transaction (the
        uploaded capture is kept, an unfinished one queued for deletion) and `FileReplaced` is
        raised: the act must not happen. `StaleCapture` when the row no longer has `eid`."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
            record = self._record(
                conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
            )
            if on_disk is None or judge_version(record.identity, on_disk) != NEW_VERSION:
                return record
            kept = f"capture {eid} of the previous version is kept" if eid else "no capture yet"
            why = (
                f"the file was replaced after its upload (noticed before {act}): the new bytes "
                f"are a new version and are uploaded anew; {kept}"
            )
            what = (record.input_data_format, record.name)
            self._restart_in(conn, file_id, on_disk, what, why)
        raise FileReplaced(file_id, eid or "", why)

    def _restart_in(
        self,
        conn: sqlite3.Connection,
        file_id: int,
        identity: FileIdentity,
        what: tuple[str, str],
        why: str,
    ) -> None:
        """`restart`'s writes, inside the caller's transaction. `what`: (format, name)."""
        self._move(conn, file_id, UploadState.PENDING)
        self._discard_unfinished_capture(conn, file_id, why)
        conn.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
        conn.execute(
            """UPDATE files SET dev = ?, inode = ?, size = ?, mtime_ns = ?, fingerprint = ?,
                   input_data_format = ?, name = ?, eid = NULL, sid = NULL,
                   chunk_size = NULL, num_parts = NULL, upload_state = ?,
                   capture_state = NULL, error = NULL, intent_at = NULL,
                   intent_nonce = NULL, renamed_at = NULL, attempts = 0,
                   unlisted_since = NULL, unlisted_confirmed_at = NULL,
                   next_attempt_at = NULL, result_paths = '[]', actions_done = '[]',
                   updated_at = ?
               WHERE id = ?""",
            (*_identity_columns(identity), *what, UploadState.PENDING, utc_now(), file_id),
        )
        conn.execute("DELETE FROM state_history WHERE file_id = ?", (file_id,))
        conn.execute(_FORGET_RESULTS, (file_id,))
        self._event(conn, file_id, "restarted", why)

    def update_location(
        self, file_id: int, path: str, identity: FileIdentity, *, eid: str | None = None
    ) -> None:
        """The input was moved (done_dir / failed_dir): follow it, so it is not seen as new."""
        with self._transaction() as conn:
            self._still_has(conn, file_id, eid)
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
        """Journal a file that will not be uploaded as it is, with the sentence why.

        Under the connection's lock throughout: an upload worker of this process must never see
        the row between its registration (pending) and its rejection, or it could act on it.
        """
        with self._lock:
            record = self.register(path, identity, input_data_format, name)
            if record.identity != identity:
                record = self.restart(record.id, identity, input_data_format, name, "changed")
            self.mark_rejected(record.id, error)
            return self.get(record.id)

    def mark_create_intent(self, file_id: int, token: str) -> str:
        """Journal that a capture carrying `token` is about to be created, before the POST.

        A token already journaled for this row is kept (a retried create is the same intent, and
        a late capture from an earlier try must carry the token the sweeps look for); the token
        in force is returned.
        """
        at = utc_now()
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.UPLOADING)
            conn.execute(
                # A kept token keeps its first time: a capture carrying it may have been made
                # by the first try, and searches of the listing stop at that time.
                """UPDATE files SET upload_state = ?, error = NULL,
                       intent_at = CASE WHEN intent_nonce IS NULL OR intent_at IS NULL
                                        THEN ? ELSE intent_at END,
                       intent_nonce = COALESCE(intent_nonce, ?), updated_at = ? WHERE id = ?""",
                (UploadState.UPLOADING, at, token, at, file_id),
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
            """SELECT * FROM files WHERE upload_state = ? AND eid IS NOT NULL
               AND intent_nonce IS NOT NULL AND renamed_at IS NULL ORDER BY id""",
            (UploadState.UPLOADED,),
        )
        return self._records(rows)

    def record_created(self, file_id: int, eid: str, chunk_size: int, num_parts: int) -> None:
        """The server's answer to create, in one transaction."""
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.UPLOADING)
            conn.execute(
                """UPDATE files SET eid = ?, chunk_size = ?, num_parts = ?,
                       upload_state = ?, updated_at = ? WHERE id = ?""",
                (eid, chunk_size, num_parts, UploadState.UPLOADING, utc_now(), file_id),
            )
            self._event(conn, file_id, "created", f"capture {eid}, {num_parts} part(s)")

    def mark_uploading(self, file_id: int) -> None:
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.UPLOADING)
            conn.execute(
                """UPDATE files SET upload_state = ?, error = NULL, updated_at = ?
                   WHERE id = ?""",
                (UploadState.UPLOADING, utc_now(), file_id),
            )

    def mark_waiting(self, file_id: int) -> None:
        """Every part is acknowledged; completion waits for the pose verdict (or `approve`)."""
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.WAITING)
            conn.execute(
                "UPDATE files SET upload_state = ?, error = NULL, updated_at = ? WHERE id = ?",
                (UploadState.WAITING, utc_now(), file_id),
            )
            self._event(conn, file_id, "waiting", "all parts acknowledged; completion waits")

    def mark_uploaded(self, file_id: int, state: str | None = None, sid: str | None = None) -> None:
        """The server acknowledged the upload: the file is `uploaded`, and the capture state
        its answer gave (`state`, `sid`) is journaled in the same transaction, so processing
        outcomes heard from then on apply (`states.judge_capture_state`)."""
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.UPLOADED)
            conn.execute(
                """UPDATE files SET upload_state = ?, error = NULL, attempts = 0,
                       next_attempt_at = NULL, updated_at = ? WHERE id = ?""",
                (UploadState.UPLOADED, utc_now(), file_id),
            )
            if state is not None:
                observe_in(conn, file_id, state, Source.UPLOAD, sid)

    def mark_failed(self, file_id: int, error: str, next_attempt_at: str | None = None) -> None:
        """A failure worth retrying later (network, server, permissions the user can fix)."""
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.FAILED)
            conn.execute(
                """UPDATE files SET upload_state = ?, error = ?, attempts = attempts + 1,
                       next_attempt_at = ?, updated_at = ? WHERE id = ?""",
                (UploadState.FAILED, recorded(error), next_attempt_at, utc_now(), file_id),
            )
            self._event(conn, file_id, "failed", error)

    def mark_rejected(self, file_id: int, error: str) -> None:
        """The input itself is unusable: not retried until the file changes."""
        with self._transaction() as conn:
            self._move(conn, file_id, UploadState.REJECTED)
            conn.execute(
                """UPDATE files SET upload_state = ?, error = ?, updated_at = ?
                   WHERE id = ?""",
                (UploadState.REJECTED, recorded(error), utc_now(), file_id),
            )
            self._event(conn, file_id, "rejected", error)

    def set_next_attempt(self, file_id: int, at: str | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE files SET next_attempt_at = ? WHERE id = ?", (at, file_id))

    def due_retries(self, now: str) -> list[FileRecord]:
        """Failed files whose next attempt is due."""
        rows = self._query(
            """SELECT * FROM files WHERE upload_state = ?
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id""",
            (UploadState.FAILED, now),
        )
        return self._records(rows)

    @staticmethod
    def _move(conn: sqlite3.Connection, file_id: int, to: UploadState) -> None:
        """Check, inside the caller's transaction, that this row may move to `to`."""
        row = conn.execute("SELECT upload_state FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        check_move(file_id, row["upload_state"], to)
