"""The journal on real SQLite files: schema, migrations, transactions, durability settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from teleport_sync.journal import (
    MOVES,
    SCHEMA_VERSION,
    IllegalMove,
    Journal,
    JournalError,
    UploadState,
)
from teleport_sync.models import FileIdentity
from teleport_sync.status.report import status_rows

IDENTITY = FileIdentity(1, 2, 300, 4, "f" * 32)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite3")


def test_fresh_journal_is_at_the_current_schema(journal: Journal) -> None:
    assert journal.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(journal.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "parts", "state_history", "events"} <= tables


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as first:
        first.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    with Journal(path) as second:
        assert second.schema_version == SCHEMA_VERSION
        assert [f.path for f in second.all_files()] == ["/a.zip"]


def test_migrating_from_an_empty_version_zero_database(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x)").connection.commit()
    with Journal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION


def test_a_journal_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match="upgrade teleport-sync"):
        Journal(path)


def test_a_file_that_is_not_sqlite_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="move it aside"):
        Journal(path)


def test_a_failed_transaction_rolls_back_everything(journal: Journal) -> None:
    record = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    with pytest.raises(RuntimeError), journal._transaction() as conn:
        conn.execute("UPDATE files SET eid = 'half-done' WHERE id = ?", (record.id,))
        conn.execute(
            "INSERT INTO parts (file_id, number, size, md5, etag, acknowledged_at) "
            "VALUES (?, 1, 1, 'm', 'e', 'now')",
            (record.id,),
        )
        raise RuntimeError("crash mid-transaction")
    assert journal.get(record.id).eid is None
    assert journal.parts(record.id) == {}


def test_created_and_parts_are_recorded(journal: Journal) -> None:
    record = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    journal.mark_create_intent(record.id, "feedfacefeedface")
    journal.record_created(record.id, "e1", 100, 3)
    journal.record_part(record.id, 2, 100, "m2", '"e2"')
    journal.record_part(record.id, 1, 100, "m1", '"e1"')
    parts = journal.parts(record.id)
    assert list(parts) == [1, 2] and parts[2].etag == '"e2"'
    [row] = status_rows(journal)
    assert row["parts_done"] == 2 and row["num_parts"] == 3 and row["upload_state"] == "uploading"


def test_state_history_appends_only_changes(journal: Journal) -> None:
    record = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    journal.record_created(record.id, "e1", 100, 1)
    journal.mark_uploaded(record.id, "UPLOADED")
    assert not journal.record_state(record.id, "UPLOADED")
    assert journal.record_state(record.id, "PROCESSING", sid="s1")
    assert journal.record_state(record.id, "SOMETHING_NEW")
    history = [h["state"] for h in journal.state_history(record.id)]
    assert history == ["UPLOADED", "PROCESSING", "SOMETHING_NEW"]
    assert journal.get(record.id).sid == "s1"


def test_restart_forgets_the_old_version(journal: Journal) -> None:
    record = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    journal.record_created(record.id, "e1", 100, 3)
    journal.record_part(record.id, 1, 100, "m1", '"e1"')
    new_identity = FileIdentity(1, 2, 301, 5, "0" * 32)
    fresh = journal.restart(record.id, new_identity, "bulk-images", "a.zip", "changed")
    assert fresh.eid is None and fresh.identity == new_identity
    assert journal.parts(record.id) == {}
    assert journal.events(record.id)[-1] == ("restarted", "changed")


def test_no_urls_or_tokens_columns(journal: Journal) -> None:
    conn = sqlite3.connect(journal.path)
    columns = {
        row[1]
        for table in ("files", "parts", "state_history", "events")
        for row in conn.execute(f"PRAGMA table_info({table})")
    }
    # `viewer_url` is the capture's public viewer page, stored without any signed query (see
    # test_results.py); presigned part and model URLs are never stored.
    assert not any(("url" in c and c != "viewer_url") or "token" in c for c in columns)


def test_migrating_a_version_1_journal_keeps_its_rows(tmp_path: Path) -> None:
    """A journal written by the first release (schema 1) opens, migrates, and keeps its data."""
    import sqlite_utils

    from teleport_sync.journal import MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO files (path, size, upload_state, created_at, updated_at, eid) "
        "VALUES ('/old.zip', 10, 'uploaded', 'then', 'then', 'e-old')"
    )
    conn.commit()
    conn.close()

    with Journal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION >= 2
        [record] = journal.all_files()
        assert (record.path, record.eid, record.upload_state) == ("/old.zip", "e-old", "uploaded")
        assert journal.fact("anything") is None
        journal.set_fact("k", "v1")
        journal.set_fact("k", "v2")
        assert journal.fact("k") == "v2"


def test_upload_states_move_only_as_the_state_machine_allows(journal: Journal) -> None:
    record = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    assert record.upload_state is UploadState.PENDING
    journal.mark_create_intent(record.id, "tok")
    journal.record_created(record.id, "eid-1", 100, 3)
    journal.mark_failed(record.id, "network down", "2099-01-01T00:00:00+00:00")
    journal.mark_uploading(record.id)
    journal.mark_uploaded(record.id)
    assert journal.get(record.id).upload_state is UploadState.UPLOADED

    # An uploaded file is never failed, rejected or sent again by a stray call: each would
    # upload it twice or lose its capture. The row is left as it was.
    for stray in (
        lambda: journal.mark_failed(record.id, "late failure"),
        lambda: journal.mark_rejected(record.id, "late rejection"),
        lambda: journal.mark_uploading(record.id),
        lambda: journal.mark_create_intent(record.id, "tok2"),
    ):
        with pytest.raises(IllegalMove, match="no move from uploaded"):
            stray()
    after = journal.get(record.id)
    assert (after.upload_state, after.error, after.eid) == (UploadState.UPLOADED, None, "eid-1")
    assert [kind for kind, _ in journal.events(record.id)].count("failed") == 1

    # Only a restart (the file changed) leaves `uploaded` or `rejected`.
    journal.mark_rejected(
        journal.restart(record.id, IDENTITY, "bulk-images", "a.zip", "x").id, "bad"
    )
    with pytest.raises(IllegalMove, match="no move from rejected to uploading"):
        journal.mark_uploading(record.id)
    assert (
        journal.restart(record.id, IDENTITY, "bulk-images", "a.zip", "y").upload_state == "pending"
    )


def test_every_state_has_a_way_out_and_every_move_target_is_a_state() -> None:
    assert set(MOVES) == set(UploadState)
    for state in UploadState:
        assert state in MOVES[UploadState.PENDING], f"{state} cannot be restarted"


def test_a_row_losing_an_unfinished_capture_queues_it_for_deletion(journal: Journal) -> None:
    changed = FileIdentity(1, 2, 301, 5, "e" * 32)
    uploading = journal.register("/a.zip", IDENTITY, "bulk-images", "a.zip")
    journal.mark_create_intent(uploading.id, "tok-a")
    journal.record_created(uploading.id, "eid-a", 100, 3)
    done = journal.register("/b.zip", IDENTITY, "bulk-images", "b.zip")
    journal.mark_create_intent(done.id, "tok-b")
    journal.record_created(done.id, "eid-b", 100, 3)
    journal.mark_uploaded(done.id)
    forgotten = journal.register("/c.zip", IDENTITY, "bulk-images", "c.zip")
    journal.mark_create_intent(forgotten.id, "tok-c")
    journal.record_created(forgotten.id, "eid-c", 100, 3)
    journal.mark_failed(forgotten.id, "network", None)

    journal.restart(uploading.id, changed, "bulk-images", "a.zip", "the file changed")
    journal.restart(done.id, changed, "bulk-images", "b.zip", "the file changed")
    journal.forget_paths(["/c.zip"])
    # The finished capture (b) is the user's model and is kept; the other two are useless.
    assert journal.discarded_captures() == [
        ("eid-a", "the file changed"),
        ("eid-c", "forgotten"),
    ]
    journal.discard_failed("eid-a", "the file changed", "HTTP 503")
    journal.discard_failed("eid-x", "duplicate made by a create that timed out", "HTTP 503")
    journal.capture_discarded("eid-c")
    assert journal.discarded_captures() == [
        ("eid-a", "the file changed"),
        ("eid-x", "duplicate made by a create that timed out"),
    ]
    # Operators see what is left to clean up, and why it is not done yet.
    from teleport_sync.status.health import health_report

    left = health_report(journal, [])["captures_to_delete"]
    assert [(d["eid"], d["attempts"], d["last_error"]) for d in left] == [
        ("eid-a", 1, "HTTP 503"),
        ("eid-x", 1, "HTTP 503"),
    ]
