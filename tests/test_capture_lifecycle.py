"""A capture's life obeys one state machine (DESIGN §3a): the table itself, the journal that
applies it, and the real daemon held to it by signed webhooks that come early, late, twice or
in the wrong order, by a results folder that cannot be written, and by inputs whose results
folders would collide.

Each daemon test runs the emulator and the daemon over loopback, posts signed deliveries to
the daemon's own receiver, and reads the journal, the disk, the hook's log and the
notifications a sink received.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from teleport_sync.config import Settings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.events.webhooks import Delivery, WebhookReceiver, apply_delivery
from teleport_sync.journal import FileRecord, Journal, Source, UploadState
from teleport_sync.journal.lock import JournalLock
from teleport_sync.journal.states import judge_capture_state
from teleport_sync.models import CaptureOutput, FileIdentity

from .helpers import MIB, make_zip, set_knobs, wait_for
from .sink import Sink, free_port
from .test_daemon import Running, rows, settings_for
from .test_webhooks import SECRET, signed

# -- the table ---------------------------------------------------------------------------------


def verdict(upload: str, current: str | None, heard: str, source: Source) -> str:
    return judge_capture_state(upload, current, heard, source).outcome


def test_nothing_a_poll_or_webhook_hears_moves_a_capture_before_its_upload_completed() -> None:
    for source in (Source.POLL, Source.WEBHOOK):
        for upload in (UploadState.PENDING, UploadState.UPLOADING, UploadState.FAILED):
            for heard in ("READY", "ERROR", "FAILED", "PROCESSING", "UPLOADED"):
                assert verdict(upload, None, heard, source) == "seen"
    # This station's own completion answer is what makes it `uploaded`.
    assert verdict(UploadState.UPLOADING, None, "UPLOADED", Source.UPLOAD) == "applied"
    assert verdict(UploadState.UPLOADING, None, "READY", Source.UPLOAD) == "applied"


def test_terminal_states_are_final_and_a_failure_yields_only_to_the_api() -> None:
    done = UploadState.UPLOADED
    for heard in ("ERROR", "FAILED", "PROCESSING", "UPLOADED", "SOMETHING_NEW"):
        for source in (Source.POLL, Source.WEBHOOK):
            assert verdict(done, "READY", heard, source) == "seen"
    assert verdict(done, "READY", "ready", Source.WEBHOOK) == "duplicate"
    assert verdict(done, "ERROR", "FAILED", Source.POLL) == "duplicate"
    for heard in ("PROCESSING", "UPLOADED"):
        assert verdict(done, "ERROR", heard, Source.POLL) == "seen"
    # A later READY after a failure: only from the API's own answer.
    assert verdict(done, "ERROR", "READY", Source.POLL) == "applied"
    assert verdict(done, "FAILED", "READY", Source.UPLOAD) == "seen"
    # Deletion is the user's word alone, and nothing comes after it.
    assert verdict(done, "READY", "DELETED", Source.USER) == "applied"
    assert verdict(done, "READY", "DELETED", Source.WEBHOOK) == "seen"
    assert verdict(done, "DELETED", "READY", Source.POLL) == "seen"


def test_states_only_move_forward_and_unknown_ones_are_followed() -> None:
    done = UploadState.UPLOADED
    assert verdict(done, "UPLOADED", "PROCESSING", Source.POLL) == "applied"
    assert verdict(done, "PROCESSING", "UPLOADED", Source.POLL) == "seen"
    assert verdict(done, "PROCESSING", "processing", Source.POLL) == "duplicate"
    assert verdict(done, "PROCESSING", "QUEUED_FOR_GPU", Source.POLL) == "applied"
    assert verdict(done, "QUEUED_FOR_GPU", "READY", Source.POLL) == "applied"


# -- the journal applies it ----------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        yield journal


def created(journal: Journal, name: str = "a.zip", eid: str = "e-1") -> FileRecord:
    record = journal.register(f"/inbox/{name}", FileIdentity(1, 2, 3, 4, "f"), "bulk-images", name)
    journal.mark_create_intent(record.id, "feedfacefeedface")
    journal.record_created(record.id, eid, 5 * MIB, 2)
    return journal.get(record.id)


def test_a_refused_move_is_kept_in_the_history_once_and_changes_nothing(journal: Journal) -> None:
    record = created(journal)
    verdict = journal.observe_capture(record.id, "READY", source=Source.WEBHOOK, sid="forged")
    assert (verdict.outcome, verdict.note) == ("seen", verdict.note) and verdict.note
    journal.observe_capture(record.id, "READY", source=Source.WEBHOOK, sid="forged")
    after = journal.get(record.id)
    assert (after.capture_state, after.sid, after.upload_state) == (None, None, "uploading")
    [entry] = journal.state_history(record.id)
    assert entry["state"] == "READY" and entry["applied"] is False
    assert "not completed" in entry["note"]

    journal.mark_uploaded(record.id, "UPLOADED", "sid-from-the-api")
    assert journal.get(record.id).sid == "sid-from-the-api"
    journal.observe_capture(record.id, "READY", source=Source.POLL)
    journal.observe_capture(record.id, "ERROR", source=Source.POLL, error="CONVERSION_FAILED")
    journal.observe_capture(record.id, "PROCESSING", source=Source.POLL)
    final = journal.get(record.id)
    assert (final.capture_state, final.error) == ("READY", None)
    assert [(h["state"], h["applied"]) for h in journal.state_history(record.id)] == [
        ("READY", False),
        ("UPLOADED", True),
        ("READY", True),
        ("ERROR", False),
        ("PROCESSING", False),
    ]


def test_a_webhook_is_checked_against_the_api_and_its_body_never_trusted(journal: Journal) -> None:
    record = created(journal)
    journal.mark_uploaded(record.id, "UPLOADED", "sid-1")
    api_says: dict[str, str] = {"state": "PROCESSING"}
    ended: list[FileRecord] = []

    def verify(eid: str) -> CaptureOutput:
        return CaptureOutput(
            eid=eid, name="a.zip", state=api_says["state"], created="2026-12-01T00:00:00Z",
            sid="sid-1", error_reason_slug=api_says.get("slug"),
        )  # fmt: skip

    def deliver(state: str, sid: str | None = "sid-forged") -> str:
        return apply_delivery(journal, Delivery("e-1", state, sid, None), verify, ended.append)

    # The API does not agree yet: the delivery moves nothing, PROCESSING is journaled.
    assert deliver("READY") == "refused"
    assert journal.get(record.id).capture_state == "PROCESSING" and not ended
    api_says.update(state="READY")
    assert deliver("READY") == "applied"
    assert deliver("READY") == "duplicate"
    assert [r.capture_state for r in ended] == ["READY"] and journal.get(record.id).sid == "sid-1"
    # A replayed failure for a finished capture: the API says READY; nothing rolls back.
    assert deliver("ERROR") == "refused"
    assert journal.get(record.id).capture_state == "READY" and len(ended) == 1
    notes = [h["note"] for h in journal.state_history(record.id) if not h["applied"]]
    # The replay is refused without asking the API: no answer of its could make it count.
    assert notes == [
        "the API says PROCESSING",
        "READY is final: a later or replayed state never undoes it",
    ]


def test_a_webhook_the_api_cannot_confirm_wakes_the_poller_and_moves_nothing(
    journal: Journal,
) -> None:
    from teleport_sync.api import TransientError

    record = created(journal)
    journal.mark_uploaded(record.id, "UPLOADED")
    woken: list[bool] = []

    def down(eid: str) -> CaptureOutput:
        raise TransientError("listing captures failed: 503")

    outcome = apply_delivery(
        journal, Delivery("e-1", "ERROR", None, "X"), down, lambda r: None, lambda: woken.append(1)
    )
    assert (outcome, woken) == ("unverified", [1])
    assert journal.get(record.id).capture_state == "UPLOADED"


def test_two_inputs_never_claim_one_results_folder(journal: Journal) -> None:
    a, b, c = (created(journal, f"{n}.zip", f"e-{n}") for n in "abc")
    assert journal.claim_result_dir(a.id, "/r/x.zip", "e-a") == ("/r/x.zip", None)
    assert journal.claim_result_dir(a.id, "/r/other", "e-a") == ("/r/x.zip", None)
    assert journal.claim_result_dir(b.id, "/r/x.zip", "e-b") == ("/r/x.zip.e-b", "/inbox/a.zip")
    # A folder inside a claimed one is taken too: the name that meets it gets the eid.
    assert journal.claim_result_dir(c.id, "/r/x.zip/in/y.zip", "e-c") == (
        "/r/x.zip.e-c/in/y.zip",
        "/inbox/a.zip",
    )
    # Names that only share a prefix do not meet; one around a claimed folder does.
    d, e = created(journal, "d.zip", "e-d"), created(journal, "e.zip", "e-e")
    assert journal.claim_result_dir(d.id, "/r/t.e-e", "e-d") == ("/r/t.e-e", None)
    assert journal.claim_result_dir(e.id, "/r/t", "e-e")[0] == "/r/t"
    f = created(journal, "f.zip", "e-f")
    assert journal.claim_result_dir(f.id, "/r", "e-f") == ("/r.e-f", "/inbox/a.zip")


# -- files the daemon creates are private, whatever the umask ------------------------------------


def test_the_journal_and_its_lock_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state" / "teleport-sync"
    old = os.umask(0o022)
    try:
        with JournalLock(state / "journal.sqlite3"), Journal(state / "journal.sqlite3") as j:
            record = created(j)
            j.mark_uploaded(record.id, "UPLOADED")
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in [state, state.parent, *state.iterdir()]
            }
    finally:
        os.umask(old)
    assert modes == {
        "state": 0o700,
        "teleport-sync": 0o700,
        "journal.sqlite3": 0o600,
        "journal.sqlite3-wal": 0o600,
        "journal.sqlite3-shm": 0o600,
        "journal.sqlite3.lock": 0o600,
    }


def test_a_journal_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path):
        pass
    for name in ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"):
        if (tmp_path / name).exists():
            os.chmod(tmp_path / name, 0o644)
    with Journal(path):
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o600}


# -- the daemon, with signed deliveries over loopback --------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=11, chunk_size=5 * MIB, processing_delay_seconds=0.5)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def hook_argv(log: Path) -> list[str]:
    write = "import os; open(os.environ['LOG'], 'a').write(os.environ['TELEPORT_STATE'] + '\\n')"
    return ["/usr/bin/env", f"LOG={log}", sys.executable, "-c", write]


def with_webhooks(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink, **extra: object
) -> Settings:
    port = free_port()
    values: dict[str, object] = {
        "webhooks": {"listen": f"127.0.0.1:{port}", "secret": SECRET},
        "actions": {
            "done_dir": tmp_path / "done",
            "failed_dir": tmp_path / "failed",
            "on_ready": hook_argv(tmp_path / "hook.log"),
            "on_failed": hook_argv(tmp_path / "hook.log"),
        },
        "notify": [{"url": sink.url, "events": ["ready", "failed"]}],
    }
    values.update(extra)
    return settings_for(emulator, tmp_path, **values)


def deliver(settings: Settings, eid: str, state: str, **fields: str) -> str:
    body = json.dumps({"eid": eid, "state": state, **fields}).encode()
    url = f"http://{settings.webhooks.listen}{settings.webhooks.path}"
    answer = httpx.post(url, content=body, headers=signed(body), timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["outcome"])


def events(sink: Sink) -> list[tuple[str, list[str]]]:
    return [(r.json()["event"], r.json().get("result_paths") or []) for r in sink.received]


def test_an_early_terminal_webhook_moves_notifies_and_deletes_nothing(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    set_knobs(emulator, put_delay_seconds=0.4)
    settings = with_webhooks(emulator, tmp_path, sink)
    inbox = settings.watch.paths[0]
    with Running(settings):
        source = make_zip(inbox / "scan.zip", images=4, pad=33 * MIB)  # 7 parts of 5 MiB
        wait_for(
            lambda: rows(settings).get("scan.zip", {}).get("parts_done", 0) >= 1,
            30,
            "the first part acknowledged",
        )
        row = rows(settings)["scan.zip"]
        eid = str(row["eid"])
        assert deliver(settings, eid, "READY", sid="forged-sid") == "refused"
        assert deliver(settings, eid, "ERROR", error_reason="NOT_ENOUGH_FRAMES") == "refused"
        now = rows(settings)["scan.zip"]
        assert (now["upload_state"], now["capture_state"], now["sid"]) == ("uploading", None, None)
        assert source.exists() and not (tmp_path / "hook.log").exists() and not sink.received

        wait_for(
            lambda: (tmp_path / "done" / "scan.zip").exists() and len(sink.received) >= 1,
            60,
            "uploaded, READY by poll, downloaded, moved, announced",
        )
        wait_for(lambda: (tmp_path / "hook.log").exists(), 10, "the hook")
        done = rows(settings)["scan.zip"]
        assert done["sid"] != "forged-sid"
    assert (tmp_path / "hook.log").read_text() == "READY\n"
    [(kind, paths)] = events(sink)
    assert kind == "ready" and paths and all(Path(p).is_file() for p in paths)
    assert emulator.stats.count("api", "DELETE") == 0
    history = [(h["state"], h["source"], h["applied"]) for h in done["state_history"]]
    assert ("READY", "webhook", False) in history and ("ERROR", "webhook", False) in history
    assert history[-1] == ("READY", "poll", True)


def test_replayed_and_late_webhooks_never_roll_a_finished_capture_back(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    settings = with_webhooks(emulator, tmp_path, sink)
    inbox = settings.watch.paths[0]
    with Running(settings):
        make_zip(inbox / "scan.zip", images=4)
        wait_for(lambda: len(sink.received) >= 1, 40, "READY, the model, the notification")
        row = rows(settings)["scan.zip"]
        eid = str(row["eid"])
        assert row["phase"] == "done"
        assert deliver(settings, eid, "ERROR", error_reason="CONVERSION_FAILED") == "refused"
        assert deliver(settings, eid, "PROCESSING") == "refused"
        assert deliver(settings, eid, "READY") == "duplicate"
        assert deliver(settings, eid, "ERROR", error_reason="CONVERSION_FAILED") == "refused"
        after = rows(settings)["scan.zip"]
    assert (after["capture_state"], after["phase"], after["error"]) == ("READY", "done", None)
    assert after["result_paths"] == row["result_paths"]
    assert all(Path(p).is_file() for p in after["result_paths"])  # type: ignore[union-attr]
    assert (tmp_path / "hook.log").read_text() == "READY\n"
    assert [kind for kind, _ in events(sink)] == ["ready"]
    refused = [h for h in after["state_history"] if not h["applied"]]  # type: ignore[union-attr]
    assert [h["state"] for h in refused] == ["ERROR", "PROCESSING"]  # the replay added nothing


def test_ready_waits_for_the_models_and_actions_follow_them(
    emulator: EmulatorServer, tmp_path: Path, sink: Sink
) -> None:
    results = tmp_path / "results"
    results.write_text("a file where the results folder should be\n")
    settings = with_webhooks(emulator, tmp_path, sink)
    inbox = settings.watch.paths[0]
    with Running(settings, actions_retry_seconds=0.5):
        source = make_zip(inbox / "scan.zip", images=4)
        wait_for(
            lambda: bool(rows(settings).get("scan.zip", {}).get("result_error")),
            40,
            "the download refused by the results folder",
        )
        row = rows(settings)["scan.zip"]
        assert (row["capture_state"], row["phase"]) == ("READY", "downloading")
        assert source.exists() and not (tmp_path / "done").exists()
        assert not (tmp_path / "hook.log").exists() and not sink.received

        results.unlink()
        wait_for(lambda: len(sink.received) >= 1, 40, "the retried download, then the rest")
        wait_for(lambda: (tmp_path / "hook.log").exists(), 10, "the hook")
        row = rows(settings)["scan.zip"]
    assert (tmp_path / "done" / "scan.zip").exists() and not source.exists()
    [(kind, paths)] = events(sink)
    assert kind == "ready" and paths == row["result_paths"]
    assert all(Path(p).is_file() for p in paths)


def test_inputs_whose_results_folders_collide_each_get_their_own(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    # Roots m1/inbox and m2/inbox share a name, so their results go under their whole path;
    # a third root named like that path's first part holds a file whose path below it
    # repeats the rest: both inputs map to one results folder.
    m1, m2 = tmp_path / "m1" / "inbox", tmp_path / "m2" / "inbox"
    whole = m1.relative_to(m1.anchor)
    z = tmp_path / "z" / whole.parts[0]
    for root in (m1, m2, z):
        root.mkdir(parents=True)
    first = make_zip(m1 / "x.zip", images=3)
    (z / Path(*whole.parts[1:])).mkdir(parents=True)
    second = make_zip(z / Path(*whole.parts[1:]) / "x.zip", images=5)
    settings = settings_for(emulator, tmp_path, watch={"paths": [m1, m2, z], "settle_seconds": 0.5})
    with Running(settings):

        def both_done() -> bool:
            with Journal(settings.journal.path) as journal:
                got = [journal.by_path(str(p)) for p in (first, second)]
                return all(r is not None and "download" in r.actions_done for r in got)

        wait_for(both_done, 60, "both models downloaded")
    with Journal(settings.journal.path) as journal:
        a, b = (journal.by_path(str(p)) for p in (first, second))
        assert a is not None and b is not None
        paths_a, paths_b = set(a.result_paths), set(b.result_paths)
    assert paths_a and paths_b and not paths_a & paths_b
    for path in paths_a | paths_b:
        assert Path(path).is_file()
    # The capture's folder holds its profiles' folders (ply/model.ply) and its camera list.
    models_a, models_b = (r.results_by_profile["ply"] for r in (a, b))
    folder_a, folder_b = (Path(m[0]).parent.parent for m in (models_a, models_b))
    # Whichever downloaded second got the folder with its eid, and its events say so.
    suffixed = [r for r, f in ((a, folder_a), (b, folder_b)) if f.name == f"x.zip.{r.eid}"]
    assert len(suffixed) == 1 and folder_a != folder_b
    with Journal(settings.journal.path) as journal:
        said = [m for kind, m in journal.events(suffixed[0].id) if kind == "results-folder"]
    assert len(said) == 1 and said[0].endswith(f"x.zip.{suffixed[0].eid}")


# -- the receiver under a flood of slow clients ---------------------------------------------------


def test_slow_clients_are_cut_off_and_cannot_keep_a_delivery_out() -> None:
    applied: list[Delivery] = []

    def apply(delivery: Delivery) -> str:
        applied.append(delivery)
        return "applied"

    receiver = WebhookReceiver(
        "127.0.0.1:0", "/hook", SECRET, apply, request_seconds=1.5, max_connections=8
    )
    receiver.start()
    stop = threading.Event()
    slow: list[socket.socket] = []
    try:
        threads_before = threading.active_count()
        for _ in range(30):  # a slowloris flood: each sends a header line now and then
            sock = socket.create_connection(receiver.address, timeout=5)
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)

        def trickle() -> None:
            while not stop.wait(0.3):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")

        threading.Thread(target=trickle, daemon=True).start()
        body = json.dumps({"eid": "e-1", "state": "READY"}).encode()
        url = f"http://{receiver.address[0]}:{receiver.address[1]}/hook"
        answer = httpx.post(url, content=body, headers=signed(body), timeout=5)
        assert answer.status_code == 200 and [d.eid for d in applied] == ["e-1"]
        assert threading.active_count() - threads_before <= 8 + 4

        # Every slow connection is closed by the server within its time (plus a reap).
        def closed(sock: socket.socket) -> bool:
            try:
                return sock.recv(1024) == b""
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False

        assert all(closed(sock) for sock in slow)
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        receiver.close()
