"""`status --json` renders a year of finished rows in bulk (issue 32): every row, however odd,
comes out with the same fields and values as `status_rows` (the contract's one reference), and
a few representative rows carry the very values the implementation before the bulk rendering
printed for them (pinned below, measured on that code)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal, Source
from teleport_sync.models import FileIdentity
from teleport_sync.status.report import ReportOptions, status_json_lines, status_rows

from .conftest import write_config
from .test_cli import run_cli

LATIN1_PATH = os.fsdecode(b"/year/caf\xe9.zip")  # a name from an old camera: not UTF-8
REPORT = {
    "verdict": "warn",
    "reasons": ["3 of 40 photos are blurry"],
    "measures": {"blur": {"value": 0.1 + 0.2, "rule": "blur_min", "nan": float("nan")}},
    "figures": {"photos": 40, "ratio": 1 / 3, "big": 10**20, "tiny": 1e-07},
    "worst": ["IMG_0007.jpg", "Ünïcödé.jpg"],
}
CLEAN_REPORT = {"verdict": "ok", "reasons": [], "figures": {"photos": 12, "seconds": 2.5}}


def _finished(
    journal: Journal, n: int, path: str, *, name: str | None = None, state: str = "READY"
) -> int:
    record = journal.register(
        path, FileIdentity(1, n, 4096 + n, 1, f"print-{n}"), "bulk-images", name or f"scan {n}"
    )
    journal.record_created(record.id, f"e{n:04d}", 4096, 2)
    journal.record_part(record.id, 1, 2048, "m1", "etag-1")
    journal.record_part(record.id, 2, 2048, "m2", "etag-2")
    journal.mark_uploaded(record.id)
    journal.observe_capture(record.id, "PROCESSING", source=Source.POLL, sid=f"s{n}")
    journal.observe_capture(record.id, state, source=Source.WEBHOOK)
    if state == "READY":
        journal.mark_action(record.id, "download", [f"/results/{n}/model.ply"])
    return record.id


@pytest.fixture
def varied(tmp_path: Path) -> Path:
    """Finished rows plain and odd, and beside them a row in each phase not over."""
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        plain = _finished(journal, 1, "/year/plain.zip")
        journal.observe_capture(plain, "PROCESSING", source=Source.POLL)  # heard late: a note
        journal.record_results(plain, {"default": ["/results/1/model.ply"]}, ["/results/1/p.jpg"])
        journal.record_viewer_url(plain, "https://teleport.example/v/e0001")
        journal.set_input_facts(plain, "print-1", 40, 12.5, 0.1)
        deleted = _finished(journal, 2, "/year/deleted.zip", state="PROCESSING")
        journal.observe_capture(deleted, "DELETED", source=Source.USER)
        _finished(journal, 3, LATIN1_PATH)
        _finished(journal, 4, "/year/back\\slash.zip", name="back\\slash")
        _finished(journal, 5, "/year/日本語.zip", name="日本語 \u202e gnp.zip")
        control = _finished(journal, 6, "/year/ctl.zip", name="ctl\x1b[2J\x07")
        journal.record_results(control, {"default": ["/results/6/ü.ply"]}, [])
        checked = _finished(journal, 7, "/year/checked.zip")
        journal.save_preflight(checked, "print-7", "warn", REPORT, [])
        clean = _finished(journal, 8, "/year/clean.zip")
        journal.save_preflight(clean, "print-8", "ok", CLEAN_REPORT, [])
        stale = _finished(journal, 9, "/year/stale.zip")  # checked as an older version
        journal.save_preflight(stale, "older-print", "ok", CLEAN_REPORT, [])
        posed = _finished(journal, 10, "/year/posed.zip")
        journal.record_teleport_posed(
            posed, {"posed": 38, "frames": 40, "left_out": ["a/IMG_1.jpg", "IMG_2.jpg"]}
        )
        damaged = _finished(journal, 11, "/year/damaged.zip")
        thirds = _finished(journal, 16, "/year/thirds.zip", name='say "hi"')
        journal.set_input_facts(thirds, "print-16", 3, 1 / 3, 1e20)
        _finished(journal, 17, "/year/tab\there\x7f.zip")
        okay = _finished(journal, 18, "/year/okay.zip")
        journal.save_preflight(okay, "print-18", "ok", CLEAN_REPORT, [])
        _finished(journal, 12, "/year/fetching.zip", state="FAILED")
        failed = journal.register("/year/failed.zip", FileIdentity(1, 13, 9, 1, "f"), "video", "f")
        journal.mark_failed(failed.id, "HTTP 503 from the server", "2026-12-01T10:00:00+00:00")
        uploading = journal.register("/year/up.zip", FileIdentity(1, 14, 9, 1, "u"), "video", "u")
        journal.record_created(uploading.id, "e0014", 4096, 3)
        journal.mark_uploading(uploading.id)
        journal.record_part(uploading.id, 1, 2048, "m", "etag")
        journal.register("/year/queued.zip", FileIdentity(1, 15, 9, 1, "q"), "bulk-images", "q")
        journal.note_sighting("/year/settling.zip", "/year", "waiting for 5 s")
        journal.note_sighting("/year/clean.zip", "/year", "rewritten: waiting for 5 s")
    with sqlite3.connect(path) as db:  # damage no writer of ours makes: bytes that are not UTF-8
        db.execute(
            "UPDATE state_history SET note = CAST(x'6e6f7465ff' AS TEXT) WHERE id = "
            "(SELECT MAX(id) FROM state_history WHERE file_id = ?)",
            (damaged,),
        )
        db.execute("UPDATE files SET frames = 3, estimated_cost = 4.0 WHERE id = ?", (damaged,))
    return path


def _by_path(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["path"]: row for row in rows}


def test_bulk_rendering_equals_the_reference_for_every_row(varied: Path) -> None:
    with Journal(varied) as journal:
        for options in (ReportOptions(), ReportOptions(download_wanted=False)):
            reference = status_rows(journal, options)
            lines = list(status_json_lines(journal, options))
            assert lines == [json.dumps(row) for row in reference]  # byte for byte, in order
            rendered = dict(
                journal.finished_json(
                    download_wanted=options.download_wanted,
                    phase="done",
                    ready=None,
                    deleted="the capture was deleted from the account",
                )
            )
            by_path = _by_path(reference)
            ids = {Path(r.path).name: r.id for r in journal.all_files()}
            # SQLite rendered the plain ones (the same bytes), and left the odd ones alone.
            for name in ("plain.zip", "deleted.zip", "okay.zip", "stale.zip"):
                line = rendered[ids[name]]
                assert line == json.dumps(by_path[f"/year/{name}"]), name
            odd = ("checked.zip", "posed.zip", "thirds.zip", "clean.zip", "queued.zip", "up.zip")
            for name in odd:
                assert rendered[ids[name]] is None, name
            assert rendered[ids[Path(LATIN1_PATH).name]] is None
            assert "NaN" in lines[6] and "\\u00dc" in lines[6]  # checked.zip: not plain
            assert all(line.isascii() for line in lines)  # as json.dumps prints, in any locale
    assert len(lines) == 19


def test_status_json_prints_what_the_earlier_implementation_printed(
    varied: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    listed = run_cli("--config", str(config), "status", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    by_path = _by_path(rows)
    assert [Path(r["path"]).name for r in rows] == [
        "plain.zip",
        "deleted.zip",
        "caf\\xe9.zip",
        "back\\\\slash.zip",
        "日本語.zip",
        "ctl.zip",
        "checked.zip",
        "clean.zip",
        "stale.zip",
        "posed.zip",
        "damaged.zip",
        "thirds.zip",
        "tab\there\x7f.zip",  # shown as it is: the JSON escapes it
        "okay.zip",
        "fetching.zip",
        "failed.zip",
        "up.zip",
        "queued.zip",
        "settling.zip",
    ]
    plain = by_path["/year/plain.zip"]
    assert {k: plain[k] for k in PINNED_PLAIN} == PINNED_PLAIN
    assert [(h["state"], h["source"], h["applied"], h["note"]) for h in plain["state_history"]] == [
        ("PROCESSING", "poll", True, None),
        ("READY", "webhook", True, None),
        ("PROCESSING", "poll", False, PLAIN_NOTE),
    ]
    assert by_path["/year/deleted.zip"]["phase"] == "done"
    assert by_path["/year/deleted.zip"]["reason"] == "the capture was deleted from the account"
    assert by_path["/year/deleted.zip"]["capture_state"] == "DELETED"
    assert by_path["/year/caf\\xe9.zip"]["name"] == "scan 3"
    assert by_path["/year/back\\\\slash.zip"]["name"] == "back\\slash"
    assert by_path["/year/日本語.zip"]["name"] == "日本語 \\u202e gnp.zip"
    control = by_path["/year/ctl.zip"]
    assert control["name"] == "ctl\\x1b[2J\\x07"
    assert control["results_by_profile"] == {"default": ["/results/6/ü.ply"]}
    checked = by_path["/year/checked.zip"]["preflight"]
    assert checked["measures"]["blur"]["value"] == 0.30000000000000004
    assert checked["figures"] == {"photos": 40, "ratio": 1 / 3, "big": 10**20, "tiny": 1e-07}
    assert checked["worst"] == ["IMG_0007.jpg", "Ünïcödé.jpg"] and checked["approved_at"] is None
    assert '"nan": NaN' in listed.stdout  # as json.dumps has always printed it
    clean = by_path["/year/clean.zip"]
    assert clean["phase"] == "settling" and clean["reason"] == "rewritten: waiting for 5 s"
    assert {k: v for k, v in clean["preflight"].items() if k != "checked_at"} == {
        **CLEAN_REPORT,
        "approved_at": None,
    }
    assert by_path["/year/stale.zip"]["preflight"] is None
    assert by_path["/year/posed.zip"]["teleport_posed"] == {
        "posed": 38,
        "frames": 40,
        "left_out": ["a/IMG_1.jpg", "IMG_2.jpg"],
        "matched": True,
        "kind": "photos",
        "sentence": "Teleport posed 38 of 40 photos; left out: IMG_1, IMG_2",
    }
    damaged = by_path["/year/damaged.zip"]
    assert damaged["state_history"][-1]["note"] == "note\udcff"
    assert (damaged["frames"], damaged["estimated_cost"]) == (3, 4.0)
    fetching = by_path["/year/fetching.zip"]
    assert (fetching["phase"], fetching["reason"]) == ("failed", "no reason given")
    failed = by_path["/year/failed.zip"]
    assert failed["phase"] == "failed" and failed["attempts"] == 1
    assert failed["reason"] == "HTTP 503 from the server; next attempt at 2026-12-01 10:00:00 UTC"
    up = by_path["/year/up.zip"]
    assert (up["phase"], up["reason"], up["parts_done"]) == (
        "uploading",
        "1 of 3 parts acknowledged",
        1,
    )
    assert by_path["/year/queued.zip"]["phase"] == "queued"
    settling = by_path["/year/settling.zip"]
    assert settling["upload_state"] == "pending" and settling["incomplete_since"] is None


PLAIN_NOTE = "READY is final: a later or replayed state never undoes it"
PINNED_PLAIN: dict[str, Any] = {
    "bytesize": 4097,
    "input_data_format": "bulk-images",
    "name": "scan 1",
    "eid": "e0001",
    "sid": "s1",
    "upload_state": "uploaded",
    "parts_done": 2,
    "num_parts": 2,
    "capture_state": "READY",
    "unlisted_since": None,
    "unlisted_confirmed_at": None,
    "error": None,
    "attempts": 0,
    "next_attempt_at": None,
    "result_paths": ["/results/1/model.ply"],
    "phase": "done",
    "reason": None,
    "frames": 40,
    "duration_seconds": 12.5,
    "estimated_cost": 0.1,
    "result_error": None,
    "results_by_profile": {"default": ["/results/1/model.ply"]},
    "preview_paths": ["/results/1/p.jpg"],
    "result_next_at": None,
    "viewer_url": "https://teleport.example/v/e0001",
    "preflight": None,
    "teleport_posed": None,
}


def test_a_phase_without_done_reads_no_finished_row_and_says_nothing_of_them(
    varied: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    listed = run_cli("--config", str(config), "status", "--json", "--phase", "failed")
    assert [Path(r["path"]).name for r in json.loads(listed.stdout)] == [
        "fetching.zip",
        "failed.zip",
    ]
    table = run_cli("--config", str(config), "status", "--phase", "failed", env={"COLUMNS": "200"})
    assert "2 file(s) (filtered)" in table.stdout and "not shown" not in table.stdout
    done = json.loads(
        run_cli("--config", str(config), "status", "--json", "--phase", "done").stdout
    )
    every = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    assert done == [r for r in every if r["phase"] == "done"] and len(done) == 13


def test_a_damaged_journal_is_one_clear_line_from_the_readers(
    varied: Path, tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    with sqlite3.connect(varied) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with varied.open("r+b") as journal_file:  # a b-tree page overwritten: a disk fault
        journal_file.seek(page_size * 3)
        journal_file.write(b"\xff" * page_size)
    for args in (("status",), ("status", "--json"), ("health", "--json")):
        said = run_cli("--config", str(config), *args)
        assert said.returncode == 1, (args, said.stdout)
        assert str(varied) in said.stderr and "Traceback" not in said.stderr, args
        assert "move it aside" in said.stderr, args
