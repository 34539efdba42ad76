"""One folder, one live journal (issue 31): two daemons with their own journals on one folder
upload each file once; the second holds its files naming the first and says it is unhealthy;
a claim whose owner died is taken over once its lease expires, and said; the marker never flips
between two owners."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.watch.claim import MARKER, Claims, parse_marker

from .conftest import write_config
from .helpers import MIB, make_zip, set_knobs, wait_for
from .test_faults import DaemonProcess, status

LEASE = 1.0  # seconds: the daemons beat every quarter of it, so the tests stay fast


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=31, chunk_size=5 * MIB, processing_delay_seconds=0.2)


def station(
    tmp_path: Path,
    emulator: EmulatorServer,
    name: str,
    watched: Path,
    extra: str = "",
    *,
    watch: str = "",
    lease: float = LEASE,
) -> Path:
    """A station's config: its own journal and results, watching `watched` (`watch`: more
    `[watch]` keys; `extra`: more sections)."""
    home = tmp_path / name
    home.mkdir()
    return write_config(
        home / "config.toml",
        emulator,
        extra=(
            f'[watch]\npaths = ["{watched}"]\nsettle_seconds = 0.3\n'
            f"claim_lease_seconds = {lease}\n" + watch + "[poll]\ninterval_seconds = 0.3\n"
            f'[results]\ndir = "{home / "results"}"\n'
            '[log]\nlevel = "DEBUG"\nformat = "json"\n' + extra
        ),
    )


def health(config: Path) -> tuple[int, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    done = subprocess.run(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "health", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    return done.returncode, json.loads(done.stdout)


def captures_named(emulator: EmulatorServer, name: str) -> int:
    return sum(1 for c in emulator.backend.captures.values() if c.name.startswith(name))


def started(daemon: DaemonProcess) -> bool:
    return '"watching"' in daemon.log.read_text()


def marker_journal(folder: Path) -> str:
    claim = parse_marker((folder / MARKER).read_text())
    assert claim is not None
    return claim.journal


@pytest.fixture
def bind_mounts() -> Iterator[list[Path]]:
    """Bind mounts a test made, unmounted after it."""
    made: list[Path] = []
    yield made
    for target in made:
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.parametrize("reached", ["same path", "symlink", "bind mount"])
def test_two_daemons_on_one_folder_upload_each_file_once(
    emulator: EmulatorServer, tmp_path: Path, reached: str, bind_mounts: list[Path]
) -> None:
    inbox = tmp_path / "share"
    inbox.mkdir()
    other_path = inbox
    if reached == "symlink":
        other_path = tmp_path / "mnt-share"
        other_path.symlink_to(inbox, target_is_directory=True)
    if reached == "bind mount":
        other_path = tmp_path / "mnt-share"
        other_path.mkdir()
        mounted = subprocess.run(["mount", "--bind", str(inbox), str(other_path)], check=False)
        if mounted.returncode != 0:
            pytest.skip("bind mounts need CAP_SYS_ADMIN")
        bind_mounts.append(other_path)
    first_cfg = station(tmp_path, emulator, "service", inbox)
    second_cfg = station(tmp_path, emulator, "user", other_path)
    first = DaemonProcess(first_cfg, tmp_path / "service.log")
    second = None
    try:
        wait_for(lambda: started(first), 30, "the first daemon")
        second = DaemonProcess(second_cfg, tmp_path / "user.log")
        wait_for(lambda: started(second), 30, "the second daemon")
        first_journal = str(tmp_path / "service" / "journal.sqlite3")

        code, report = health(second_cfg)
        assert code == 1 and report["ok"] is False
        root = report["roots"][0]  # type: ignore[index]
        assert root["claimed_by"]["journal"] == first_journal
        assert root["claimed_by"]["pid"] == first.process.pid
        assert f"pid {first.process.pid}" in root["problem"]
        assert health(first_cfg)[0] == 0

        make_zip(inbox / "scan.zip")
        wait_for(
            lambda: status(first_cfg).get("scan.zip", {}).get("capture_state") == "READY",
            30,
            "the owner's upload",
        )
        wait_for(
            lambda: status(second_cfg).get("scan.zip", {}).get("phase") == "held",
            30,
            "the second daemon's hold",
        )
        held = status(second_cfg)["scan.zip"]
        reason = str(held["reason"])
        assert first_journal in reason and f"pid {first.process.pid}" in reason
        assert socket.gethostname() in reason
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "teleport_sync",
                "--config",
                str(second_cfg),
                "approve",
                str(held["path"]),
            ],
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert "stop that daemon first" in refused.stdout + refused.stderr
        assert marker_journal(inbox) == first_journal, "the marker never changes hands"
        shown = subprocess.run(
            [sys.executable, "-m", "teleport_sync", "--config", str(second_cfg), "status"],
            capture_output=True,
            text=True,
        ).stdout
        assert f"watched by journal {first_journal}" in shown
        # A one-shot `upload` with a third journal leaves the file to the folder's owner.
        third_cfg = station(tmp_path, emulator, "script", other_path)
        one_shot = subprocess.run(
            [
                sys.executable,
                "-m",
                "teleport_sync",
                "--config",
                str(third_cfg),
                "upload",
                str(other_path / "scan.zip"),
            ],
            capture_output=True,
            text=True,
        )
        assert one_shot.returncode != 0
        assert f"pid {first.process.pid}" in one_shot.stdout + one_shot.stderr
    finally:
        if second is not None:
            assert second.stop() == 0
        assert first.stop() == 0
    assert captures_named(emulator, "scan.zip") == 1
    assert "another journal watches this folder" in (tmp_path / "user.log").read_text()


def test_a_killed_owners_folder_is_taken_over_once_its_lease_expires(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "share"
    inbox.mkdir()
    first_cfg = station(tmp_path, emulator, "service", inbox)
    second_cfg = station(tmp_path, emulator, "user", inbox)
    first = DaemonProcess(first_cfg, tmp_path / "service.log")
    second = None
    try:
        wait_for(lambda: started(first), 30, "the first daemon")
        second = DaemonProcess(second_cfg, tmp_path / "user.log")
        wait_for(lambda: started(second), 30, "the second daemon")
        make_zip(inbox / "while-both.zip")
        wait_for(
            lambda: status(first_cfg).get("while-both.zip", {}).get("capture_state") == "READY",
            30,
            "the owner's upload",
        )
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        wait_for(lambda: "took over the watch folder" in second.log.read_text(), 30, "takeover")
        code, report = health(second_cfg)
        root = report["roots"][0]  # type: ignore[index]
        assert root["claimed_by"] is None
        assert root["taken_over_from"]["pid"] == first.process.pid
        assert code == 0
        assert marker_journal(inbox) == str(tmp_path / "user" / "journal.sqlite3")
        shown = subprocess.run(
            [sys.executable, "-m", "teleport_sync", "--config", str(second_cfg), "status"],
            capture_output=True,
            text=True,
        ).stdout
        assert f"taken over from journal {tmp_path / 'service' / 'journal.sqlite3'}" in shown

        make_zip(inbox / "after.zip")
        wait_for(
            lambda: status(second_cfg).get("after.zip", {}).get("capture_state") == "READY",
            30,
            "the new owner's upload",
        )
        assert status(second_cfg)["while-both.zip"]["phase"] == "held"
    finally:
        if second is not None:
            assert second.stop() == 0
        first.stop()
    assert captures_named(emulator, "while-both.zip") == 1
    assert captures_named(emulator, "after.zip") == 1
    assert "expired without a heartbeat" in (tmp_path / "user.log").read_text()


@pytest.mark.parametrize("second_starts", ["before the kill", "after the kill"])
def test_an_owner_killed_mid_upload_hands_its_file_to_the_journal_that_took_over(
    emulator: EmulatorServer, tmp_path: Path, second_starts: str
) -> None:
    """The owner is killed -9 with a capture made and 2 of its 5 parts sent; the other daemon
    (watching beside it all along, holding the file, or started after the kill) takes the
    folder over; the owner is started again. The restarted owner deletes its unfinished
    capture (never completed: nothing paid) and hands the file over; the new owner uploads it
    without an `approve`. One capture completed, none left half made, and each station's
    `status` says what happened: also of a file the owner had completed (held by the new
    owner, saying which capture it is)."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    one_at_a_time = "[upload]\nconcurrency = 1\nfiles_at_once = 1\n"
    first_cfg = station(tmp_path, emulator, "service", inbox, one_at_a_time)
    second_cfg = station(tmp_path, emulator, "user", inbox, one_at_a_time)
    first_journal = str(tmp_path / "service" / "journal.sqlite3")
    second_journal = str(tmp_path / "user" / "journal.sqlite3")
    first = DaemonProcess(first_cfg, tmp_path / "service.log")
    second = restarted = None
    try:
        wait_for(lambda: started(first), 30, "the first daemon")
        if second_starts == "before the kill":
            second = DaemonProcess(second_cfg, tmp_path / "user.log")
            wait_for(lambda: started(second), 30, "the second daemon")
        make_zip(inbox / "earlier.zip")
        wait_for(
            lambda: status(first_cfg).get("earlier.zip", {}).get("upload_state") == "uploaded",
            30,
            "a file the owner completes",
        )
        earlier = str(status(first_cfg)["earlier.zip"]["eid"])
        # Slow parts: the kill lands mid-upload, seconds before the last part could go.
        set_knobs(emulator, put_delay_seconds=2.0)
        scan = make_zip(tmp_path / "scan.zip", pad=22 * MIB)  # 5 parts of 5 MiB
        os.replace(scan, inbox / "scan.zip")
        wait_for(
            lambda: status(first_cfg).get("scan.zip", {}).get("phase") == "uploading",
            60,
            "the owner's upload",
        )
        make_zip(inbox / "queued.zip")  # waits behind scan.zip: not begun when the kill comes
        wait_for(
            lambda: status(first_cfg).get("queued.zip", {}).get("phase") == "queued",
            30,
            "the second file queued by the owner",
        )
        wait_for(
            lambda: int(status(first_cfg)["scan.zip"]["parts_done"] or 0) >= 2,
            60,
            "two parts acknowledged by the owner",
        )
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        killed = status(first_cfg)["scan.zip"]
        half_made = str(killed["eid"])
        assert killed["upload_state"] == "uploading" and killed["num_parts"] == 5
        assert int(killed["parts_done"] or 0) < 5, "killed before its last part (and completion)"
        assert half_made in emulator.backend.captures
        set_knobs(emulator, put_delay_seconds=0.0)
        if second is None:
            second = DaemonProcess(second_cfg, tmp_path / "user.log")

        wait_for(lambda: "took over the watch folder" in second.log.read_text(), 30, "takeover")
        wait_for(
            lambda: "took the folder over" in str(status(second_cfg)["scan.zip"]["reason"]),
            30,
            "the new owner's hold saying what happened",
        )
        held = status(second_cfg)["scan.zip"]
        assert held["phase"] == "held"
        reason = str(held["reason"])
        assert first_journal in reason and f"pid {first.process.pid}" in reason
        assert "which uploads it" not in reason, "the old owner is no longer live"
        assert emulator.backend.captures[half_made].completed_at is None

        restarted = DaemonProcess(first_cfg, tmp_path / "service.log")
        for name in ("scan.zip", "queued.zip"):
            wait_for(
                lambda name=name: status(second_cfg).get(name, {}).get("capture_state") == "READY",
                60,
                f"the new owner's upload of {name}, handed over",
            )
        wait_for(
            lambda: "completed this file" in str(status(second_cfg)["earlier.zip"]["reason"]),
            30,
            "the new owner told which files the old one completed",
        )
        done_there = status(second_cfg)["earlier.zip"]
        assert done_there["phase"] == "held" and f"as capture {earlier}" in done_there["reason"]
        not_begun = status(first_cfg)["queued.zip"]
        assert not_begun["phase"] == "held" and second_journal in str(not_begun["reason"])
        assert "had made no capture" in str(not_begun["reason"])
        mine = status(first_cfg)["scan.zip"]
        assert mine["phase"] == "held" and mine["eid"] is None
        said = str(mine["reason"])
        assert second_journal in said and socket.gethostname() in said
        assert f"pid {second.process.pid}" in said
        assert f"capture {half_made}" in said and "deleted" in said
        assert "uploading" not in str(mine["phase"])
        assert marker_journal(inbox) == second_journal, "the marker stays with the new owner"
    finally:
        if restarted is not None:
            assert restarted.stop() == 0
        if second is not None:
            assert second.stop() == 0
        first.stop()
    assert half_made not in emulator.backend.captures, "no half-made capture left behind"
    made = [c for c in emulator.backend.captures.values() if c.name.startswith("scan.zip")]
    assert len(made) == 1 and made[0].completed_at is not None
    assert captures_named(emulator, "queued.zip") == 1
    assert captures_named(emulator, "earlier.zip") == 1
    original = (inbox / "scan.zip").read_bytes()
    assert emulator.backend.storage.read_range(made[0].eid, 0, len(original)) == original


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def claims(
    folder: Path, journal_id: str, mono: Clock, wall: Clock, *, lock: bool = False
) -> Claims:
    """A station's claims; without OS locks unless asked (two machines on one share)."""
    return Claims(
        journal_id,
        folder / f"{journal_id}.sqlite3",
        [folder],
        lease_seconds=60.0,
        monotonic=mono,
        wall=wall,
        host=journal_id,
        os_lock=lock,
    )


def test_an_owner_whose_clock_is_behind_is_replaced_once_and_steps_down(tmp_path: Path) -> None:
    """Wall clocks of two machines disagree: the second may take the claim on first sight, but
    the first then steps down at its next heartbeat instead of writing the marker back."""
    mono = Clock(0.0)
    owner = claims(tmp_path, "a", mono, Clock(1_000.0))  # ten minutes behind
    other = claims(tmp_path, "b", mono, Clock(1_600.0))
    assert [c.first for c in owner.start()] == [True]
    taken = other.start()
    assert taken and taken[0].took_over is not None and taken[0].took_over.journal_id == "a"
    mono.now += 15  # the owner's claim is confirmed, or not, a settle after it was written
    lost = owner.beat()
    assert lost and lost[0].lost_to is not None and lost[0].lost_to.journal_id == "b"
    for _ in range(5):
        mono.now += 15
        owner.beat()
        other.beat()
        assert parse_marker((tmp_path / MARKER).read_text()).journal_id == "b"  # type: ignore[union-attr]
    assert owner.owner_of(tmp_path / "x.zip") is not None
    assert other.owner_of(tmp_path / "x.zip") is None


def test_a_silent_claim_expires_after_a_lease_of_the_readers_clock(tmp_path: Path) -> None:
    mono = Clock(0.0)
    owner = claims(tmp_path, "a", mono, Clock(5_000.0))
    other = claims(tmp_path, "b", mono, Clock(9_000.0))  # far ahead: must not matter later
    owner.start()
    other.roots[0].fresh = False  # not a first sight: only the heartbeat counts
    assert other.beat() == []
    assert other.owner_of(tmp_path / "x.zip") is not None
    for _ in range(8):  # the owner keeps beating for two minutes: live throughout
        mono.now += 15
        owner.beat()
        assert other.beat() == []
    mono.now += 59  # the owner died: no beat for just under a lease
    assert other.beat() == []
    mono.now += 2
    changes = other.beat()
    assert changes and changes[0].took_over is not None
    assert other.owner_of(tmp_path / "x.zip") is None


def test_a_clean_stop_frees_the_folder_at_once(tmp_path: Path) -> None:
    mono = Clock(0.0)
    owner = claims(tmp_path, "a", mono, Clock(100.0), lock=True)
    other = claims(tmp_path, "b", mono, Clock(100.0), lock=True)
    owner.start()
    assert other.start() == []  # the lock is held: live
    owner.release()
    changes = other.beat()
    assert changes and changes[0].took_over is not None
    assert changes[0].took_over.stopped_at is not None


def test_a_missing_folder_is_claimed_when_it_appears_without_a_word_about_the_marker(
    tmp_path: Path,
) -> None:
    """The watcher says a folder is missing (and how to fix it); the claim adds no second,
    misleading line about a marker it could not write there."""
    share = tmp_path / "share"  # not mounted yet
    mono = Clock(0.0)
    station = claims(share, "a", mono, Clock(100.0))
    with capture_logs() as logs:
        assert station.start() == []
        mono.now += 15
        assert station.beat() == []
    assert logs == [] and not share.exists()
    share.mkdir()
    mono.now += 15
    assert [c.first for c in station.beat()] == [True]  # claimed as at a first start
    assert parse_marker((share / MARKER).read_text()).journal_id == "a"  # type: ignore[union-attr]


def test_our_own_marker_is_not_retaken_while_another_process_locks_the_folder(
    tmp_path: Path,
) -> None:
    """Another daemon on this machine is taking the folder over (it holds the lock, and has
    not rewritten the marker yet): a restart of the marker's own journal contends instead of
    writing it back."""
    mono = Clock(0.0)
    first = claims(tmp_path, "a", mono, Clock(100.0), lock=True)
    first.start()
    first.release()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        again = claims(tmp_path, "a", mono, Clock(100.0), lock=True)
        assert again.start() == []
        assert again.owner_of(tmp_path / "x.zip") is not None
    finally:
        os.close(fd)
    assert again.beat() == []  # the lock gone, the claim its own and stopped: quietly ours
    assert again.owner_of(tmp_path / "x.zip") is None
    assert parse_marker((tmp_path / MARKER).read_text()).run == again.run  # type: ignore[union-attr]


def test_a_hostile_marker_is_named_as_text_not_obeyed(tmp_path: Path) -> None:
    """The marker lies in a shared folder anyone who drops files there may write: its journal
    path and host reach `health`, `status` and held files' reasons, and must not move the
    operator's cursor, set a terminal's title or forge a line there."""
    mono = Clock(0.0)
    (tmp_path / MARKER).write_text(
        "ffff\x1b[2J\n/tmp/\x1b]0;pwned\x07evil\u202e.sqlite3\nhost=vm\x1b[31m\npid=1\n"
        f"run=r\x1b[0m\nrenewed_at={5_000.0:.3f}\nlease_seconds=60\nbeat=1\n"
    )
    other = claims(tmp_path, "b", mono, Clock(5_001.0))
    other.start()
    owner = other.owner_of(tmp_path / "x.zip")
    assert owner is not None
    who = owner[1].who()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in who), who
    assert "\\x1b]0;pwned\\x07evil\\u202e" in who and "vm\\x1b[31m" in who


@pytest.mark.parametrize("lease", ["99999999", "inf", "nan"])
def test_a_marker_claiming_an_endless_lease_is_held_to_the_longest_a_station_can_set(
    tmp_path: Path, lease: str
) -> None:
    """A marker (hand-edited, damaged, or written by anyone who can write the shared folder)
    whose lease is years long, or not a number: its folder was held until then, every file
    'held' naming a daemon that does not exist. The reader honours at most the longest lease
    a config may set ([watch] claim_lease_seconds <= 3600)."""
    mono = Clock(0.0)
    (tmp_path / MARKER).write_text(
        "dead\n/gone/journal.sqlite3\nhost=elsewhere\npid=1\nrun=r\n"
        f"renewed_at={5_000.0:.3f}\nlease_seconds={lease}\nbeat=1\n"
    )
    other = claims(tmp_path, "b", mono, Clock(5_001.0))
    other.start()
    mono.now += 3_000
    other.beat()
    assert other.owner_of(tmp_path / "x.zip") is not None or lease == "nan"
    mono.now += 700  # past 3600 s of silence by our own clock: the owner is gone
    other.beat()
    assert other.owner_of(tmp_path / "x.zip") is None
