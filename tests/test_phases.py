"""Phase and reason: the pure rule, and the status rows built from a real journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleport_sync.journal import Journal
from teleport_sync.models import FileIdentity
from teleport_sync.status.phases import PHASES, PhaseFacts, derive
from teleport_sync.status.report import ReportOptions, phase_counts, status_rows

IDENTITY = FileIdentity(1, 2, 300, 4, "f")


@pytest.mark.parametrize(
    ("facts", "phase", "reason_has"),
    [
        (PhaseFacts(sighting="settling", sighting_reason="still"), "settling", "still"),
        (PhaseFacts(sighting="incomplete", sighting_reason="no moov"), "incomplete", "no moov"),
        (PhaseFacts(), "queued", "upload slot"),
        (PhaseFacts(held="over the daily budget"), "held", "budget"),
        (PhaseFacts(paused="paused by pause"), "paused", "pause"),
        (PhaseFacts(upload_state="uploading"), "uploading", "creating"),
        (PhaseFacts(upload_state="uploading", parts_done=1, num_parts=3), "uploading", "1 of 3"),
        (PhaseFacts(upload_state="uploading", parts_done=3, num_parts=3), "completing", "complete"),
        (PhaseFacts(upload_state="uploaded", capture_state="PROCESSING"), "processing", "PROC"),
        (PhaseFacts(upload_state="uploaded"), "processing", "first state"),
        (PhaseFacts(upload_state="uploaded", capture_state="ready"), "downloading", "fetching"),
        (
            PhaseFacts(upload_state="uploaded", capture_state="READY", result_error="disk full"),
            "downloading",
            "disk full",
        ),
        (PhaseFacts(upload_state="uploaded", capture_state="ERROR"), "failed", "ERROR"),
        (PhaseFacts(upload_state="uploaded", capture_state="DELETED"), "done", "deleted"),
        (
            PhaseFacts(
                upload_state="failed",
                error="HTTP 500",
                next_attempt_at="2026-01-02T03:04:05.1+00:00",
            ),
            "failed",
            "2026-01-02 03:04:05 UTC",
        ),
        (PhaseFacts(upload_state="rejected", error="no images"), "rejected", "no images"),
        # Held because the journal is new to the folder: journaled as refused, shown as held.
        (
            PhaseFacts(upload_state="rejected", error="held: run `teleport-sync approve PATH`"),
            "held",
            "approve PATH",
        ),
        (PhaseFacts(upload_state="rejected", error="/in/held: no images"), "rejected", "/in/held"),
    ],
)
def test_phase_and_reason(facts: PhaseFacts, phase: str, reason_has: str) -> None:
    got, reason = derive(facts)
    assert got == phase and got in PHASES
    assert reason is not None and reason_has in reason


def test_done_has_no_reason_and_download_off_is_done() -> None:
    ready = PhaseFacts(upload_state="uploaded", capture_state="READY", actions_done=("download",))
    assert derive(ready) == ("done", None)
    not_wanted = PhaseFacts(upload_state="uploaded", capture_state="READY", download_wanted=False)
    assert derive(not_wanted) == ("done", None)


def test_a_sighting_of_an_uploaded_file_shows_the_new_version(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        record = journal.register("/in/a.zip", IDENTITY, "bulk-images", "a.zip")
        journal.mark_uploaded(record.id)
        journal.note_sighting("/in/a.zip", "/in", "waiting for it to stop changing")
        journal.note_sighting("/in/b.mp4", "/in", "waiting for it to stop changing")
        rows = {r["path"]: r for r in status_rows(journal)}
        assert rows["/in/a.zip"]["phase"] == "settling" and rows["/in/a.zip"]["eid"] is None
        assert rows["/in/b.mp4"]["phase"] == "settling"
        assert rows["/in/b.mp4"]["input_data_format"] == "video"
        journal.drop_sighting("/in/a.zip")
        rows = {r["path"]: r for r in status_rows(journal)}
        assert rows["/in/a.zip"]["phase"] == "processing"
        assert phase_counts(list(rows.values()))["settling"] == 1


def test_incomplete_since_is_kept_while_the_file_does_not_change(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        first = journal.mark_incomplete("/in/a.zip", "/in", 10, 1, "no directory")
    with Journal(path) as journal:  # a restart
        assert journal.mark_incomplete("/in/a.zip", "/in", 10, 1, "no directory") == first
        later = journal.mark_incomplete("/in/a.zip", "/in", 20, 2, "no directory")
        assert later > first
        [row] = status_rows(journal)
        assert row["phase"] == "incomplete" and row["reason"] == "no directory"
        assert row["incomplete_since"] == later


def test_result_error_and_hooks_reach_the_row(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        record = journal.register("/in/a.zip", IDENTITY, "bulk-images", "a.zip")
        journal.mark_uploaded(record.id)
        journal.record_state(record.id, "READY")
        journal.record_result_error(record.id, "cannot write /results: read-only", None)
        [row] = status_rows(journal)
        assert row["phase"] == "downloading" and "read-only" in row["reason"]
        assert row["result_error"] == "cannot write /results: read-only"
        assert row["frames"] is None and row["estimated_cost"] is None
        assert row["state_history"][0]["state"] == "READY"
        other = journal.register("/in/b.zip", IDENTITY, "bulk-images", "b.zip")
        held = ReportOptions(held=lambda r: "over budget" if r["id"] == other.id else None)
        rows = {r["path"]: r for r in status_rows(journal, held)}
        assert (rows["/in/b.zip"]["phase"], rows["/in/b.zip"]["reason"]) == ("held", "over budget")
