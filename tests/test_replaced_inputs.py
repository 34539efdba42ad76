"""A file's identity is checked at every step that acts on it (issue 37).

An input rewritten in place or replaced by a rename after its upload is not the bytes its
capture holds: before its models are attributed to it, before it is moved to `done_dir` or
`failed_dir`, before a hook is told about it and before its capture's deletion is recorded on
it, the journal's one rule (`states.judge_version`, asked by `Journal.confirm_version`) starts
the row over as a new version (the old capture kept) and the act does not happen.

Real parts throughout: the emulator over loopback (behind the hostile proxy where a file must
change mid-download), real SQLite journals, real files, the real daemon with inotify.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from teleport_sync.api import TeleportClient, build_client
from teleport_sync.config import Settings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.engine import Uploader
from teleport_sync.inputs import identify
from teleport_sync.journal import FileRecord, Journal, Source, UploadState
from teleport_sync.journal.states import NEW_VERSION, NO_FILE, SAME_VERSION, judge_version
from teleport_sync.models import FileIdentity
from teleport_sync.results.actions import Actions
from teleport_sync.retry import RetryPolicy

from .helpers import MIB, make_zip, wait_for
from .hostile import HostileProxy
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=37, chunk_size=5 * MIB, processing_delay_seconds=0.2)


def zip_bytes(images: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(images):
            archive.writestr(f"photos/{i:04d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(2048))
    return buffer.getvalue()


def replace_in_place(path: Path) -> bytes:
    data = zip_bytes(6)
    with path.open("r+b") as handle:  # same inode, new bytes
        handle.truncate()
        handle.write(data)
    return data


def replace_by_rename(path: Path) -> bytes:
    data = zip_bytes(6)
    fresh = path.with_name(".incoming.tmp")
    fresh.write_bytes(data)
    os.replace(fresh, path)  # a new inode at the same path
    return data


REPLACEMENTS = {"in place": replace_in_place, "by rename": replace_by_rename}


def hook_argv(log: Path) -> list[str]:
    write = "import os; open(os.environ['LOG'], 'a').write(os.environ['TELEPORT_PATH'] + '\\n')"
    return ["/usr/bin/env", f"LOG={log}", sys.executable, "-c", write]


class Station:
    """An uploader, a journal and the actions of ended captures, over one API URL."""

    def __init__(self, settings: Settings, base_url: str, token_url: str) -> None:
        self.settings = settings
        self.inbox = settings.watch.paths[0]
        self.journal = Journal(settings.journal.path)
        self.client: TeleportClient = build_client(
            base_url=base_url,
            auth_url=token_url,
            client_id=settings.api.client_id or "",
            client_secret=settings.client_secret_value(),
            policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        )
        self.uploader = Uploader(self.client, self.journal)
        self.actions = Actions(
            self.client,
            self.journal,
            results=settings.results,
            actions=settings.actions,
            roots=[self.inbox],
            results_dir=settings.results.dir,
        )

    def close(self) -> None:
        self.client.close()
        self.journal.close()

    def upload(self, path: Path) -> FileRecord:
        result = self.uploader.upload(path)
        return self.journal.get(result.file_id)

    def hear(self, record: FileRecord, state: str) -> None:
        """The poller's part: wait until the API lists the capture in `state`, journal it."""
        assert record.eid

        def listed() -> bool:
            capture = self.client.find_capture(str(record.eid))
            return capture is not None and capture.state == state

        wait_for(listed, 20, state)
        capture = self.client.find_capture(record.eid)
        assert capture is not None
        self.journal.observe_reported(record.id, capture, Source.POLL)


def station_settings(emulator: EmulatorServer, tmp_path: Path, done_dir: bool) -> Settings:
    actions: dict[str, object] = {"on_ready": hook_argv(tmp_path / "hook.log")}
    if done_dir:
        actions["done_dir"] = tmp_path / "done"
    return settings_for(emulator, tmp_path, actions=actions)


@pytest.fixture
def station(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Station]:
    settings = station_settings(emulator, tmp_path, done_dir=True)
    station = Station(settings, emulator.url, emulator.token_url)
    yield station
    station.close()


def assert_started_over(station: Station, record: FileRecord, path: Path, old: str) -> None:
    """The row is the new version, waiting to be uploaded; nothing of the old capture was done
    to the new bytes; the old capture is still in the account."""
    after = station.journal.get(record.id)
    assert after.upload_state == UploadState.PENDING and after.eid is None
    assert after.identity == identify(path) and after.result_paths == []
    assert after.actions_done == [] and after.capture_state is None
    kind, why = station.journal.events(record.id)[-1]
    assert kind == "restarted" and "replaced after its upload" in why and old in why
    done_dir = station.settings.actions.done_dir
    assert done_dir is None or not any(done_dir.rglob("*"))
    assert not (station.inbox.parent / "hook.log").exists()


# -- the rule ------------------------------------------------------------------------------------


def test_the_rule_compares_every_part_of_the_identity() -> None:
    journaled = FileIdentity(1, 2, 3, 4, "f")
    assert judge_version(journaled, FileIdentity(1, 2, 3, 4, "f")) == SAME_VERSION
    assert judge_version(journaled, None) == NO_FILE
    for changed in (
        FileIdentity(1, 9, 3, 4, "f"),  # replaced by a rename
        FileIdentity(1, 2, 3, 4, "g"),  # rewritten in place, same size and time
        FileIdentity(1, 2, 3, 5, "f"),
        FileIdentity(1, 2, 0, 4, ""),  # emptied, or a FIFO now
    ):
        assert judge_version(journaled, changed) == NEW_VERSION


def test_an_untouched_input_is_filed_as_done(station: Station, tmp_path: Path) -> None:
    scan = make_zip(station.inbox / "scan.zip", images=3)
    data = scan.read_bytes()
    record = station.upload(scan)
    station.hear(record, "READY")
    assert station.actions.run_for(record)
    after = station.journal.get(record.id)
    assert (tmp_path / "done" / "scan.zip").read_bytes() == data
    assert after.path == str(tmp_path / "done" / "scan.zip") and after.result_paths
    assert (tmp_path / "hook.log").read_text() == f"{tmp_path / 'done' / 'scan.zip'}\n"


@pytest.mark.parametrize("how", sorted(REPLACEMENTS))
@pytest.mark.parametrize("at", ["UPLOADED", "READY"])
def test_a_replaced_input_is_never_filed_as_done_and_is_uploaded_anew(
    emulator: EmulatorServer, station: Station, tmp_path: Path, how: str, at: str
) -> None:
    scan = make_zip(station.inbox / "scan.zip", images=3)
    record = station.upload(scan)
    old = str(record.eid)
    if at == "UPLOADED":  # replaced while the capture processes; READY is heard afterwards
        new_bytes = REPLACEMENTS[how](scan)
        station.hear(record, "READY")
    else:  # READY is journaled, its actions have not run yet
        station.hear(record, "READY")
        new_bytes = REPLACEMENTS[how](scan)
    assert not station.actions.run_for(station.journal.get(record.id))
    assert_started_over(station, record, scan, old)
    assert scan.read_bytes() == new_bytes and old in emulator.backend.captures  # kept
    assert not any(station.settings.results.dir.rglob("model.ply"))  # nothing fetched for it
    # The new take is uploaded as a capture of its own, and that one is filed as done.
    again = station.upload(scan)
    assert again.eid != old and emulator.object_bytes(str(again.eid)) == new_bytes
    station.hear(again, "READY")
    assert station.actions.run_for(again)
    assert (tmp_path / "done" / "scan.zip").read_bytes() == new_bytes


@pytest.mark.parametrize("how", sorted(REPLACEMENTS))
def test_without_done_dir_no_model_is_attributed_and_no_hook_runs(
    emulator: EmulatorServer, tmp_path: Path, how: str
) -> None:
    station = Station(station_settings(emulator, tmp_path, False), emulator.url, emulator.token_url)
    try:
        scan = make_zip(station.inbox / "scan.zip", images=3)
        record = station.upload(scan)
        station.hear(record, "READY")
        REPLACEMENTS[how](scan)
        assert not station.actions.run_for(station.journal.get(record.id))
        assert_started_over(station, record, scan, str(record.eid))
    finally:
        station.close()


@pytest.mark.parametrize("done_dir", [True, False], ids=["done_dir", "no done_dir"])
def test_an_input_replaced_while_its_model_downloads_gets_nothing_of_it(
    emulator: EmulatorServer, tmp_path: Path, done_dir: bool
) -> None:
    settings = station_settings(emulator, tmp_path, done_dir)
    scan = make_zip(settings.watch.paths[0] / "scan.zip", images=3)
    replaced: list[bytes] = []

    def replace_mid_download(method: str, path: str) -> None:
        if "/_emulator/models/" in path and not replaced:
            replaced.append(replace_by_rename(scan))

    with HostileProxy(emulator.url, on_request=replace_mid_download) as proxy:
        station = Station(settings, proxy.url, proxy.token_url)
        try:
            record = station.upload(scan)
            station.hear(record, "READY")
            assert not station.actions.run_for(station.journal.get(record.id))
            assert replaced, "the model was downloaded through the proxy"
            assert_started_over(station, record, scan, str(record.eid))
            # The old capture's model is on disk, the old capture's: not the new file's.
            assert list(settings.results.dir.rglob("model.ply"))
        finally:
            station.close()


def test_an_input_replaced_between_the_check_and_the_move_is_put_back(
    emulator: EmulatorServer, station: Station, tmp_path: Path
) -> None:
    scan = make_zip(station.inbox / "scan.zip", images=3)
    record = station.upload(scan)
    station.hear(record, "READY")
    replaced: list[bytes] = []

    def move_late(source: Path, target: Path) -> None:
        if not replaced:  # the new take lands after the check, before the rename
            replaced.append(replace_by_rename(source))
        shutil.move(source, target)

    station.actions.move_file = move_late
    assert not station.actions.run_for(station.journal.get(record.id))
    assert scan.read_bytes() == replaced[0]  # back where it was, not among the finished
    assert_started_over(station, record, scan, str(record.eid))


def test_deleting_the_old_capture_of_a_replaced_input_starts_it_over(
    emulator: EmulatorServer, station: Station, tmp_path: Path
) -> None:
    scan = make_zip(station.inbox / "scan.zip", images=3)
    record = station.upload(scan)
    station.hear(record, "READY")
    replace_in_place(scan)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[api]\nbase_url = "{emulator.url}"\nauth_url = "{emulator.token_url}"\n'
        f'client_id = "{emulator.config.client_id}"\n'
        f'client_secret = "{emulator.config.client_secret}"\n'
        f'[journal]\npath = "{station.settings.journal.path}"\n'
    )
    config.chmod(0o600)
    done = run_cli("--config", str(config), "captures", "delete", str(record.eid), "--yes")
    assert done.returncode == 0, done.stderr
    assert record.eid not in emulator.backend.captures
    after = station.journal.get(record.id)
    assert after.upload_state == UploadState.PENDING and after.capture_state is None
    assert after.identity == identify(scan) and "replaced after its upload" in done.stderr


# -- the daemon: READY arrives while the new take is still being written -------------------------


def write_slowly(path: Path, data: bytes, seconds: float, sleep: Callable[[float], None]) -> None:
    """Rewrite `path` in place over `seconds`, as a slow copy does: the watcher sees it change
    all along, so it cannot settle meanwhile."""
    pieces = 40
    step = -(-len(data) // pieces)
    with path.open("r+b") as handle:
        handle.truncate()
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            sleep(seconds / pieces)


def test_the_daemon_files_only_the_bytes_its_capture_holds(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator,
        tmp_path,
        actions={"done_dir": tmp_path / "done", "on_ready": hook_argv(tmp_path / "hook.log")},
    )
    scan = settings.watch.paths[0] / "scan.zip"
    with Running(settings, actions_retry_seconds=0.5):
        make_zip(scan, images=3)
        wait_for(lambda: rows(settings).get("scan.zip", {}).get("upload_state") == "uploaded")
        old = str(rows(settings)["scan.zip"]["eid"])
        new_bytes = zip_bytes(8)  # a new take, copied in slowly over the first
        write_slowly(scan, new_bytes, 8.0, time.sleep)
        wait_for(lambda: (tmp_path / "done" / "scan.zip").exists(), 60, "the new take done")
        row = rows(settings)["scan.zip"]
    with Journal(settings.journal.path) as journal:
        record = journal.by_path(str(tmp_path / "done" / "scan.zip"))
        assert record is not None
        whys = [why for kind, why in journal.events(record.id) if kind == "restarted"]
    assert (tmp_path / "done" / "scan.zip").read_bytes() == new_bytes
    assert row["eid"] != old and emulator.object_bytes(str(row["eid"])) == new_bytes
    assert old in emulator.backend.captures  # the first take's capture is kept
    assert any("replaced after its upload" in why for why in whys), whys
    assert (tmp_path / "hook.log").read_text().count("\n") == 1  # for the new take only
