"""The daemon end to end: real inotify, the emulator over loopback, real SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from teleport_sync.config import Settings
from teleport_sync.daemon import Daemon
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.status.report import status_rows

from .conftest import write_config
from .helpers import MIB, make_mp4, make_zip, wait_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=3, chunk_size=5 * MIB, processing_delay_seconds=1.5)


def settings_for(emulator: EmulatorServer, tmp_path: Path, **overrides: object) -> Settings:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "api": {
            "base_url": emulator.url,
            "auth_url": emulator.token_url,
            "client_id": emulator.config.client_id,
            "timeout_seconds": 20,
        },
        "watch": {"paths": [inbox], "settle_seconds": 0.5},
        "poll": {"interval_seconds": 0.3},
        "journal": {"path": tmp_path / "journal.sqlite3"},
        "results": {"dir": tmp_path / "results"},
    }
    values.update(overrides)
    # A claim is confirmed a tenth of a second after it is written, not 3 s (the default for a
    # 60 s lease): every daemon here still goes through the confirmation, and a test that
    # waits a moment to see that nothing is uploaded (a restart) does not wait it out instead.
    watch = values["watch"]
    if isinstance(watch, dict):
        watch.setdefault("claim_settle_seconds", 0.1)
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.api.client_secret = SecretStr(emulator.config.client_secret)
    return settings


class Running:
    def __init__(self, settings: Settings, **kwargs: object) -> None:
        self.stop = threading.Event()
        self.daemon = Daemon(settings, stop=self.stop, **kwargs)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.daemon.ready.wait(20), "the daemon did not become ready"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def rows(settings: Settings) -> dict[str, dict[str, object]]:
    with Journal(settings.journal.path) as journal:
        return {Path(str(r["path"])).name: r for r in status_rows(journal)}


def all_ready(settings: Settings, names: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        current = rows(settings)
        return names <= set(current) and all(
            current[n]["capture_state"] == "READY" and current[n]["result_paths"] for n in names
        )

    return check


@pytest.fixture
def hook_log(tmp_path: Path) -> Path:
    return tmp_path / "hook.log"


def test_watch_upload_follow_download_and_restart(
    emulator: EmulatorServer, tmp_path: Path, hook_log: Path
) -> None:
    hook = [
        sys.executable,
        "-c",
        f"import os; open({str(hook_log)!r}, 'a').write(os.environ['TELEPORT_EID'] + ' '"
        " + os.environ['TELEPORT_STATE'] + '\\n')",
    ]
    settings = settings_for(emulator, tmp_path, actions={"on_ready": hook})
    inbox = settings.watch.paths[0]
    make_zip(inbox / "before.zip", pad=6 * MIB)  # present before start
    (inbox / "notes.txt").write_text("not a capture")

    with Running(settings):
        nested = inbox / "site" / "day1"
        nested.mkdir(parents=True)
        make_mp4(nested / "walk.mp4", 7 * MIB)
        make_zip(inbox / ".hidden.zip")
        make_mp4(inbox / "copy.mp4.part", 6 * MIB)
        # A zip written in two halves, with a pause longer than the settle window.
        source = make_zip(tmp_path / "halves.zip", images=4, pad=6 * MIB).read_bytes()
        slow = inbox / "halves.zip"
        with slow.open("wb") as out:
            out.write(source[: len(source) // 2])
            out.flush()
            time.sleep(settings.watch.settle_seconds * 3)
            out.write(source[len(source) // 2 :])
        names = {"before.zip", "walk.mp4", "halves.zip"}
        wait_for(all_ready(settings, names), 60, "three READY captures with results")

    status = rows(settings)
    # Nothing ignored in silence: the stray text file has a row saying why it is not taken.
    notes = status.pop("notes.txt")
    assert notes["phase"] == "rejected"
    assert "not a capture (zip, mp4 or mov wanted)" in str(notes["reason"])
    assert set(status) == names
    for name in names:
        row = status[name]
        history = [h["state"] for h in row["state_history"]]  # type: ignore[union-attr]
        assert "PROCESSING" in history and history[-1] == "READY"
        eid = str(row["eid"])
        path = Path(str(row["path"]))
        assert emulator.object_bytes(eid) == path.read_bytes()
        assert [c.name for c in emulator.backend.captures.values()].count(name) == 1
        [result] = row["results_by_profile"]["ply"]  # type: ignore[index]
        assert Path(result).read_bytes().startswith(b"ply\n")
        # Beside the model: the camera list and the metadata it came with (metadata v2).
        names = sorted(Path(p).name for p in row["result_paths"])  # type: ignore[union-attr]
        assert names == ["cameras.json", "metadata.json", "model.ply"]
        assert list(row["results_by_profile"]) == ["ply"]  # type: ignore[arg-type]
    assert (tmp_path / "results" / "site" / "day1" / "walk.mp4" / "ply" / "model.ply").exists()
    assert emulator.stats.count("put") == sum(
        sum(emulator.stats.successful_puts(str(r["eid"])).values()) for r in status.values()
    )
    captures_before = len(emulator.backend.captures)
    puts_before = emulator.stats.count("put")
    assert len(hook_log.read_text().splitlines()) == 3

    # Restart: nothing is uploaded again, no action runs twice, and it keeps running.
    with Running(settings) as again:
        time.sleep(1.5)
        assert again.thread.is_alive()
    assert len(emulator.backend.captures) == captures_before
    assert emulator.stats.count("put") == puts_before
    assert sorted(hook_log.read_text().split()) == sorted(
        [str(r["eid"]) for r in status.values()] + ["READY"] * 3
    )


def test_invalid_inputs_are_rejected_with_a_reason_and_kept(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    inbox = settings.watch.paths[0]
    with Running(settings):
        (inbox / "empty.zip").write_bytes(b"")
        (inbox / "corrupt.zip").write_bytes(os.urandom(20_000))
        (inbox / "fake.mp4").write_bytes(os.urandom(20_000))
        (tmp_path / "notes.txt").write_text("hello")
        import zipfile

        with zipfile.ZipFile(inbox / "noimages.zip", "w") as archive:
            archive.write(tmp_path / "notes.txt", "notes.txt")
        names = {"empty.zip", "corrupt.zip", "fake.mp4", "noimages.zip"}
        wait_for(
            lambda: (
                names <= set(rows(settings))
                and all(rows(settings)[n]["upload_state"] == "rejected" for n in names)
            ),
            20,
            "four rejections",
        )
    status = rows(settings)
    assert "empty" in str(status["empty.zip"]["error"])
    assert "not a zip" in str(status["corrupt.zip"]["error"])
    assert "not an MP4" in str(status["fake.mp4"]["error"])
    assert "no images" in str(status["noimages.zip"]["error"])
    for name in names:
        assert (inbox / name).exists()
        assert str(inbox / name) in str(status[name]["error"])
    assert len(emulator.backend.captures) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_poller_idles_when_all_terminal_and_metrics_count(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(emulator, tmp_path, metrics={"listen": f"127.0.0.1:{port}"})
    make_mp4(settings.watch.paths[0] / "a.mp4", 12 * MIB)
    with Running(settings):
        wait_for(all_ready(settings, {"a.mp4"}), 30, "READY")
        time.sleep(0.5)
        lists_before = emulator.stats.count("api", "GET", "/api/v1/captures")
        time.sleep(settings.poll.interval_seconds * 5)
        assert emulator.stats.count("api", "GET", "/api/v1/captures") == lists_before
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in scraped.splitlines()
        if line and not line.startswith("#")
    }
    assert values["teleport_sync_parts_uploaded_total"] == 3
    assert values["teleport_sync_bytes_uploaded_total"] >= 12 * MIB
    assert values["teleport_sync_files_uploaded_total"] == 1
    assert values['teleport_sync_files{state="uploaded"}'] == 1
    assert values['teleport_sync_captures{state="READY"}'] == 1


# -- the daemon as a process: signals and sd_notify -------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def test_sigterm_exits_zero_quickly_and_sd_notify_is_spoken(
    emulator: EmulatorServer, tmp_path: Path, notify_socket: socket.socket
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        emulator,
        extra=(
            f'[watch]\npaths = ["{inbox}"]\nsettle_seconds = 0.5\n[poll]\ninterval_seconds = 0.5\n'
        ),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    env.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    process = subprocess.Popen(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    messages: list[str] = []

    def collect_until(predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            with contextlib.suppress(TimeoutError):
                messages.append(notify_socket.recv(4096).decode())

    try:
        collect_until(lambda: "READY=1" in messages, 20)
        make_mp4(inbox / "clip.mp4", 6 * MIB)
        collect_until(lambda: sum(m == "WATCHDOG=1" for m in messages) >= 3, 10)
        wait_for(lambda: len(emulator.backend.captures) == 1, 20, "the upload")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        elapsed = time.monotonic() - started
        collect_until(lambda: "STOPPING=1" in messages, 2)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, process.stderr.read().decode()  # type: ignore[union-attr]
    assert elapsed < 10
    assert "READY=1" in messages and "STOPPING=1" in messages
    assert any(m.startswith("STATUS=") for m in messages)
    assert messages.index("READY=1") < messages.index("STOPPING=1")


def test_unwritable_results_dir_fails_only_that_action(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    # A regular file where the results folder should be: no user, root included, can write there.
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    settings = settings_for(emulator, tmp_path)
    make_mp4(settings.watch.paths[0] / "a.mp4", 6 * MIB)
    with Running(settings, actions_retry_seconds=0.5) as running:

        def ready() -> bool:
            row = rows(settings).get("a.mp4", {})
            return row.get("capture_state") == "READY"

        wait_for(ready, 30, "READY despite the results folder")
        wait_for(lambda: rows(settings)["a.mp4"]["result_error"] is not None, 10, "the error")
        row = rows(settings)["a.mp4"]
        assert row["result_paths"] == [] and row["phase"] == "downloading"
        assert "results" in str(row["result_error"]) and "retried" in str(row["reason"])
        assert running.thread.is_alive()

        blocker.unlink()  # the fix; the action is tried again on its own
        wait_for(all_ready(settings, {"a.mp4"}), 30, "the model once the folder is writable")
    [result] = rows(settings)["a.mp4"]["results_by_profile"]["ply"]  # type: ignore[index]
    assert rows(settings)["a.mp4"]["result_error"] is None
    assert Path(result).read_bytes().startswith(b"ply\n")
