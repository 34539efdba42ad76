"""What an adversary found after the capture state machine landed, each now a test: an input
replaced while its old capture's models download, a poll pass that outlives a restart, a file
name that is not UTF-8 with notifications on, a failure the API later reports READY, a results
folder reused after `forget`, and the watch-root marker under umask 022.

The daemon tests run the real daemon against the emulator over loopback; nothing of the daemon
is patched (the emulator's own knobs slow it down where a window must be widened)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import FileRecord, Journal, Source, StaleCapture
from teleport_sync.models import CaptureOutput, FileIdentity

from .helpers import MIB, make_zip, set_knobs, wait_for
from .sink import Sink
from .test_capture_lifecycle import deliver, events, with_webhooks
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for

# -- a write about a capture the row no longer has changes nothing ----------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        yield journal


def listed(eid: str, state: str, sid: str) -> CaptureOutput:
    return CaptureOutput(
        eid=eid, name="a.zip", state=state, created=datetime(2026, 12, 1, tzinfo=UTC), sid=sid
    )


def restarted(journal: Journal) -> FileRecord:
    """A row whose capture `old` was uploaded, then whose file changed: now capture `new`."""
    record = journal.register("/inbox/a.zip", FileIdentity(1, 2, 3, 4, "f"), "bulk-images", "a")
    journal.record_created(record.id, "old", 5 * MIB, 1)
    journal.mark_uploaded(record.id, "UPLOADED")
    journal.restart(record.id, FileIdentity(1, 2, 9, 5, "g"), "bulk-images", "a", "changed")
    journal.record_created(record.id, "new", 5 * MIB, 1)
    journal.mark_uploaded(record.id, "UPLOADED")
    return journal.get(record.id)


def test_a_report_read_before_a_restart_is_stale(journal: Journal) -> None:
    record = restarted(journal)
    verdict = journal.observe_reported(record.id, listed("old", "READY", "sid-old"), Source.POLL)
    assert verdict.outcome == "stale"
    after = journal.get(record.id)
    assert (after.eid, after.capture_state, after.sid) == ("new", "UPLOADED", None)
    assert journal.observe_reported(record.id, listed("new", "READY", "s"), Source.POLL).applied


def test_actions_of_an_old_capture_write_nothing(journal: Journal) -> None:
    record = restarted(journal)
    with pytest.raises(StaleCapture):
        journal.mark_action(record.id, "download", ["/r/a.zip/ply/model.ply"], eid="old")
    with pytest.raises(StaleCapture):
        journal.record_results(record.id, {"ply": ["/r/model.ply"]}, [], eid="old")
    with pytest.raises(StaleCapture):
        journal.enqueue_notification(record.id, "ev-1", "ready", "{}", ["t"], eid="old")
    after = journal.get(record.id)
    assert (after.actions_done, after.result_paths, journal.outbox()) == ([], [], [])


def test_a_folder_that_holds_files_already_is_not_handed_out(journal: Journal) -> None:
    record = restarted(journal)
    taken = {"/r/a.zip"}
    folder, collided = journal.claim_result_dir(
        record.id, "/r/a.zip", "new", in_use=lambda f: f in taken
    )
    assert folder == "/r/a.zip.new" and collided is not None


# -- the daemon -----------------------------------------------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=5, chunk_size=5 * MIB, processing_delay_seconds=1.0)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def test_an_input_replaced_while_its_models_download_gets_its_own_capture_and_models(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    settings = settings_for(emulator, tmp_path, notify=[{"url": sink.url}])
    scan = settings.watch.paths[0] / "scan.zip"
    with Running(settings, actions_retry_seconds=0.5):
        make_zip(scan, images=4)
        wait_for(lambda: rows(settings).get("scan.zip", {}).get("eid") is not None, 30, "eid")
        old = str(rows(settings)["scan.zip"]["eid"])
        # Every API answer now takes 3 s: the old capture's download is under way for a while.
        set_knobs(emulator, slow_api_seconds=3.0, slow_api_rate=1.0)
        wait_for(lambda: rows(settings)["scan.zip"]["capture_state"] == "READY", 60, "READY")
        scan.unlink()
        make_zip(scan, images=7)  # a new version, other bytes
        wait_for(lambda: rows(settings)["scan.zip"]["eid"] not in (None, old), 90, "restarted")
        set_knobs(emulator, slow_api_seconds=0.0, slow_api_rate=0.0)
        wait_for(lambda: rows(settings)["scan.zip"]["phase"] == "done", 90, "the new version done")
        wait_for(lambda: any(e == "ready" for e, _ in events(sink)), 20, "its notification")
        row = rows(settings)["scan.zip"]
    new = str(row["eid"])
    sid = str(row["sid"])
    assert new != old and sid == emulator.backend.captures[new].sid
    asked = [c.path for c in emulator.stats.snapshot() if c.path.endswith("/metadata")]
    assert any(sid in path for path in asked), "the new capture's models were fetched"
    bodies = [r.json() for r in sink.received]
    assert [b["eid"] for b in bodies if b["event"] == "ready"][-1] == new
    assert all(b["eid"] is not None for b in bodies)  # nothing sent for a capture-less row


def test_a_file_name_that_is_not_utf8_is_announced_and_the_daemon_restarts(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    settings = settings_for(emulator, tmp_path, notify=[{"url": sink.url}])
    inbox = os.fsencode(settings.watch.paths[0])
    odd = Path(os.fsdecode(inbox + b"/caf\xe9 \xff.zip"))
    with Running(settings):
        make_zip(odd, images=3)
        wait_for(lambda: len(sink.received) >= 1, 40, "the ready notification")
    [body] = [r.json() for r in sink.received]
    assert body["event"] == "ready" and "caf\\xe9 \\xff.zip" in body["file"]
    with Running(settings):  # starts again, as a restarted service would
        pass


def test_a_failure_the_api_later_reports_ready_gets_its_ready_actions(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    set_knobs(emulator, fail_processing_with="NOT_ENOUGH_FRAMES")
    settings = with_webhooks(emulator, tmp_path, sink)
    with Running(settings, actions_retry_seconds=0.5):
        make_zip(settings.watch.paths[0] / "scan.zip", images=4)
        wait_for(lambda: len(sink.received) >= 1, 40, "the failed notification")
        eid = str(rows(settings)["scan.zip"]["eid"])
        assert (tmp_path / "failed" / "scan.zip").exists()
        emulator.backend.captures[eid].verdict = None  # the server now says READY
        assert deliver(settings, eid, "READY") == "applied"
        wait_for(lambda: len(sink.received) >= 2, 40, "the ready notification")
        wait_for(lambda: (tmp_path / "hook.log").read_text().count("\n") >= 2, 10, "the hook")
        row = rows(settings)["scan.zip"]
    assert [kind for kind, _ in events(sink)] == ["failed", "ready"]
    assert (tmp_path / "hook.log").read_text() == "FAILED\nREADY\n"
    assert (tmp_path / "done" / "scan.zip").exists() and row["phase"] == "done"
    assert all(Path(p).is_file() for p in row["result_paths"])  # type: ignore[union-attr]


def test_a_name_reused_after_forget_never_replaces_the_first_models(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, actions={"done_dir": tmp_path / "done"})
    scan = settings.watch.paths[0] / "scan.zip"
    with Running(settings):
        make_zip(scan, images=3)
        wait_for(lambda: (tmp_path / "done" / "scan.zip").exists(), 40, "the first done")
        wait_for(lambda: rows(settings)["scan.zip"]["phase"] == "done", 20, "done")
    [first_model] = rows(settings)["scan.zip"]["results_by_profile"]["ply"]  # type: ignore[index]
    first_bytes = Path(first_model).read_bytes()
    config = tmp_path / "c.toml"
    config.write_text(f'[journal]\npath = "{settings.journal.path}"\n')
    forgot = run_cli("--config", str(config), "forget", str(tmp_path / "done" / "scan.zip"))
    assert forgot.returncode == 0, forgot.stderr
    with Running(settings):
        make_zip(scan, images=6)
        # Moved beside the first input in done/ (as scan.<eid>.zip): the only row now.
        wait_for(lambda: [r["phase"] for r in rows(settings).values()] == ["done"], 40, "again")
    [row] = rows(settings).values()
    [second_model] = row["results_by_profile"]["ply"]  # type: ignore[index]
    assert second_model != first_model and Path(first_model).read_bytes() == first_bytes
    assert Path(second_model).is_file()


def test_the_watch_root_marker_is_private_whatever_the_umask(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    old = os.umask(0o022)
    try:
        with Running(settings):
            pass
    finally:
        os.umask(old)
    marker = settings.watch.paths[0] / ".teleport-sync-journal"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
