"""Operator control end to end: pause/resume and budget holds with the daemon running, the CLI
as another process, the emulator over loopback, real SQLite."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teleport_sync.commands import command
from teleport_sync.config import Settings
from teleport_sync.control import hold_reason, is_paused, pause_reason
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal

from .helpers import MIB, make_zip, wait_for
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Slow parts, so a pause lands while an upload is under way.
    return EmulatorConfig(
        seed=14, chunk_size=5 * MIB, processing_delay_seconds=0.5, put_delay_seconds=0.6
    )


def cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`teleport-sync ARGS` in its own process, on the daemon's journal."""
    config = tmp_path / "control.toml"
    config.write_text(f'[journal]\npath = "{settings.journal.path}"\n', encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def acknowledged(settings: Settings, name: str) -> int:
    row = rows(settings).get(name)
    return int(row["parts_done"]) if row else 0  # type: ignore[call-overload]


def test_pause_stops_new_parts_and_resume_sends_only_the_missing_ones(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    # Two parts at a time, not widened by the adaptive window: a pause leaves parts unsent.
    settings = settings_for(
        emulator, tmp_path, upload={"concurrency": 2, "files_at_once": 1, "adaptive": False}
    )
    inbox = settings.watch.paths[0]
    # 16 parts of 5 MiB, two at a time at 0.6 s each: ~4 s still to go when the pause is given,
    # more than the `pause` process and the daemon's ~2 s notice take on a busy machine.
    source = make_zip(inbox / "big.zip", images=4, pad=78 * MIB)
    with Running(settings):
        wait_for(lambda: acknowledged(settings, "big.zip") >= 2, what="two parts acknowledged")
        paused = cli(settings, tmp_path, "pause", str(inbox))
        assert paused.returncode == 0, paused.stderr
        paused_at = time.monotonic()
        with Journal(settings.journal.path) as journal:
            assert is_paused(journal, str(source))
            reason = pause_reason(journal, str(source))
            assert reason is not None and "teleport-sync resume" in reason
        # Parts in flight finish (and stay acknowledged); then nothing moves.
        time.sleep(3.0)
        done_while_paused = acknowledged(settings, "big.zip")
        assert done_while_paused < 16
        row = rows(settings)["big.zip"]
        assert row["phase"] == "paused" and row["reason"] == reason
        resumed = cli(settings, tmp_path, "resume", str(inbox))
        assert resumed.returncode == 0, resumed.stderr
        resumed_at = time.monotonic()
        wait_for(
            lambda: rows(settings)["big.zip"]["upload_state"] == "uploaded",
            timeout=60,
            what="the upload to finish after resume",
        )
    puts = [c for c in emulator.stats.snapshot() if c.kind == "put"]
    # A part whose gate passed just before the pause may still start; none starts later.
    late = [c for c in puts if c.started and paused_at + 1.0 < c.started < resumed_at]
    assert late == [], f"PUTs started while paused: {late}"
    eid = str(rows(settings)["big.zip"]["eid"])
    assert sorted(emulator.stats.successful_puts(eid).items()) == [(n, 1) for n in range(1, 17)]
    stored = hashlib.sha256(emulator.object_bytes(eid)).hexdigest()
    assert stored == hashlib.sha256(source.read_bytes()).hexdigest()
    assert emulator.stats.count("api", "POST", "/captures") == 1


def test_pause_everything_without_a_daemon_keeps_a_one_shot_upload_waiting(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from .conftest import write_config

    config = write_config(tmp_path / "config.toml", emulator)
    zip_path = make_zip(tmp_path / "one.zip", images=3)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
        return subprocess.run(
            [sys.executable, "-m", "teleport_sync", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
        )

    assert run("pause").returncode == 0
    waiting = run("upload", str(zip_path))
    assert waiting.returncode == 1
    assert "all uploads are paused" in waiting.stderr + waiting.stdout
    assert emulator.stats.count("api", "POST", "/captures") == 0  # no capture was created
    assert run("resume").returncode == 0
    done = run("upload", str(zip_path))
    assert done.returncode == 0, done.stderr
    assert emulator.stats.count("api", "POST", "/captures") == 1


def test_a_zip_over_the_frame_budget_is_held_until_approved(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator,
        tmp_path,
        budget={"max_frames_per_capture": 8, "price_per_capture": 1.0, "price_per_frame": 0.01},
    )
    inbox = settings.watch.paths[0]
    held = make_zip(inbox / "eleven.zip", images=11)
    with Running(settings):
        wait_for(
            lambda: rows(settings).get("eleven.zip", {}).get("frames") == 11,
            what="the zip's frames counted",
        )
        with Journal(settings.journal.path) as journal:
            record = journal.by_path(str(held))
            assert record is not None
            wait_for(
                lambda: hold_reason(journal, record.id, record.path) is not None, what="the hold"
            )
            reason = hold_reason(journal, record.id, record.path)
        assert reason is not None
        assert "max_frames_per_capture (8) by 3" in reason
        assert reason.endswith(f"; run: teleport-sync approve {held}")
        row = rows(settings)["eleven.zip"]
        assert row["upload_state"] == "pending" and row["eid"] is None
        assert row["phase"] == "held" and row["reason"] == reason
        assert row["estimated_cost"] == pytest.approx(1.11)
        assert emulator.stats.count("api", "POST", "/captures") == 0

        approved = cli(settings, tmp_path, "approve", str(held))
        assert approved.returncode == 0, approved.stderr
        assert "approved" in approved.stdout
        wait_for(
            lambda: rows(settings)["eleven.zip"]["upload_state"] == "uploaded",
            what="the approved zip uploaded",
        )
    with Journal(settings.journal.path) as journal:
        assert journal.day_usage(time.strftime("%Y-%m-%d", time.gmtime())) == (11, 1)
    nothing = cli(settings, tmp_path, "approve", str(held))
    assert nothing.returncode == 1 and "nothing held" in nothing.stderr


MODELV3 = {
    "splat_count": 2_000_000,
    "training_resolution": 3200,
    "spherical_harmonics_degrees": 3,
    "level_of_detail": True,
}


def test_folder_settings_and_sidecars_reach_the_create_request(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    drone = tmp_path / "drone"
    (drone / "deep").mkdir(parents=True)
    settings = settings_for(
        emulator,
        tmp_path,
        watch={
            "paths": [tmp_path / "inbox"],
            "settle_seconds": 0.5,
            "folder": [
                {
                    "path": drone,
                    "name_template": "drone {stem}",
                    "training_parameters": {"modelv3": MODELV3},
                },
                # More specific: wins below drone/deep.
                {"path": drone / "deep", "name_template": "deep {stem}"},
            ],
        },
    )
    inbox = settings.watch.paths[0]
    make_zip(inbox / "plain.zip")
    make_zip(drone / "flight.zip")
    make_zip(drone / "deep" / "dive.zip")
    make_zip(drone / "custom.zip")
    other = dict(MODELV3, splat_count=500_000)
    (drone / "custom.zip.teleport.toml").write_text(
        'name = "hand named"\n[training_parameters.modelv3]\n'
        + "\n".join(f"{k} = {str(v).lower()}" for k, v in other.items()),
        encoding="utf-8",
    )
    make_zip(drone / "broken.zip")
    (drone / "broken.teleport.toml").write_text(
        "[training_parameters.modelv3]\nsplat_count = 12\n", encoding="utf-8"
    )
    names = {"plain.zip", "flight.zip", "dive.zip", "custom.zip"}
    with Running(settings):
        wait_for(
            lambda: (
                all(rows(settings).get(n, {}).get("upload_state") == "uploaded" for n in names)
                and rows(settings).get("broken.zip", {}).get("upload_state") == "rejected"
            ),
            what="four uploads and one rejection",
        )
    current = rows(settings)
    sent = {n: emulator.backend.get(str(current[n]["eid"])) for n in names}
    assert sent["plain.zip"].training_parameters is None
    assert sent["flight.zip"].training_parameters == {"modelv3": MODELV3}
    assert sent["dive.zip"].training_parameters is None  # the deeper folder sets none
    assert sent["custom.zip"].training_parameters == {"modelv3": other}
    assert current["flight.zip"]["name"] == "drone flight"
    assert current["dive.zip"]["name"] == "deep dive"
    assert current["custom.zip"]["name"] == "hand named"
    error = str(current["broken.zip"]["error"])
    assert "broken.teleport.toml" in error
    assert "training_parameters.modelv3.splat_count = 12 must be" in error


def test_a_reloaded_bwlimit_closes_and_reopens_the_upload_window(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    closed = settings.model_copy(deep=True)
    closed.upload.bwlimit = "0"
    reopened = settings.model_copy(deep=True)
    reopened.upload.bwlimit = "64M"
    next_settings = [closed]
    inbox = settings.watch.paths[0]
    with Running(settings, reload=lambda: next_settings[0], root_check_seconds=0.2) as running:
        assert running.daemon.control.limiter is None  # "off": nothing paces the sending
        running.daemon.request_reload()
        wait_for(
            lambda: (
                running.daemon.control.limiter is not None
                and not running.daemon.control.limiter.window_open
            ),
            what="the window closed by the reload",
        )
        make_zip(inbox / "night.zip")
        wait_for(lambda: "night.zip" in rows(settings), what="the file journaled")
        time.sleep(1.5)  # settled and offered to a worker: the gate keeps it waiting
        assert emulator.stats.count("api", "POST", "/captures") == 0
        next_settings[0] = reopened
        running.daemon.request_reload()
        wait_for(
            lambda: rows(settings)["night.zip"]["upload_state"] == "uploaded",
            what="the upload once the window opened",
        )
    assert running.daemon.control.limiter is not None
    assert running.daemon.control.limiter.rate == 64 * MIB


def test_resume_of_one_folder_says_what_pause_still_holds_it(tmp_path: Path) -> None:
    config = tmp_path / "control.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "journal.sqlite3"}"\n', encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "teleport_sync", "--config", str(config), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=60)

    site = tmp_path / "inbox" / "site"
    assert run("pause", str(tmp_path / "inbox")).returncode == 0
    assert run("pause", f"{site}/").returncode == 0  # a trailing slash is the same folder
    partial = run("resume", str(site))
    assert partial.returncode == 0
    assert f"still paused by a pause of {tmp_path / 'inbox'}" in partial.stderr
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.paused_paths() == [str(tmp_path / "inbox")]
        assert is_paused(journal, str(site / "walk.mp4"))
        assert not is_paused(journal, str(tmp_path / "inbox2" / "walk.mp4"))
    assert run("resume").returncode == 0
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.paused_paths() == []


def test_hints_are_commands_to_paste_with_the_files_own_path() -> None:
    assert command("approve", "/srv/inbox/scan.zip") == "teleport-sync approve /srv/inbox/scan.zip"
    # A space or a quote in the name: quoted for the shell, as it must be pasted.
    spaced = command("approve", "/srv/my inbox/Bob's scan.zip")
    assert spaced == "teleport-sync approve '/srv/my inbox/Bob'\"'\"'s scan.zip'"
    assert shlex.split(spaced)[2] == "/srv/my inbox/Bob's scan.zip"
    # A name that is not UTF-8 (journaled as its bytes): bash's $'...' gives the same bytes.
    latin1 = os.fsdecode(b"/srv/caf\xe9 'x'.zip")
    assert command("resume", latin1) == "teleport-sync resume $'/srv/caf\\xe9 \\x27x\\x27.zip'"


@pytest.mark.parametrize(
    "path",
    [
        "/srv/esc\x1b[31mRED\x1b]0;t\x07\nnext line.zip",
        "/srv/caf\u00e9\u202egpj.zip",
        os.fsdecode(b"/srv/caf\xe9\x1b[2J.zip"),
    ],
)
def test_a_hint_for_a_name_with_control_characters_is_text_that_bash_turns_back_into_it(
    path: str,
) -> None:
    """A file named with escapes or a newline: the hint was its raw name in quotes, so `status`
    printed the escapes to the operator's terminal (obeyed, not shown) and the command pasted
    back named no file. Now bash's $'...' with the bytes escaped, as for a name not UTF-8."""
    hint = command("approve", path)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", hint), hint
    argument = hint.removeprefix("teleport-sync approve ")
    said = subprocess.run(["bash", "-c", f"printf %s {argument}"], capture_output=True, check=True)
    assert said.stdout == os.fsencode(path)


def test_approve_names_a_hostile_file_as_text(tmp_path: Path) -> None:
    """`approve` echoed the path it released (or could not find) raw: a name's escapes acted on
    the operator's terminal."""
    config = tmp_path / "c.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.sqlite3"}"\n')
    missing = tmp_path / "esc\x1b]0;pwned\x07\x1b[2J.zip"
    done = run_cli("--config", str(config), "approve", str(missing))
    assert done.returncode != 0
    assert "\x1b" not in done.stdout + done.stderr and "\\x1b]0;pwned\\x07" in done.stderr
