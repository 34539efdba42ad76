"""What a new studio tripped on in its first hour, each as it was seen: a broken file that
looked like a slow copy, READY arriving late and silently, errors that half helped, results of
a one-shot upload filed under an absolute path, and help cut off mid-sentence."""

from __future__ import annotations

import itertools
import os
import random
import time
import tomllib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from teleport_sync.config import Settings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.results.poller import PollSchedule

from .conftest import write_config
from .helpers import MIB, make_zip, wait_for
from .test_cli import run_cli
from .test_daemon import Running, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=3, chunk_size=5 * MIB, processing_delay_seconds=1.0)


def truncated_zip(path: Path, tmp_path: Path) -> Path:
    """A real zip cut short, written in one go by a writer that then closes it."""
    whole = make_zip(tmp_path / "whole.zip", images=4, image_bytes=4096)
    data = whole.read_bytes()
    whole.unlink()
    with path.open("wb") as out:  # one open, one write, one close: a copy that ended
        out.write(data[: len(data) // 2])
    return path


# -- 1. a broken file is said to be broken, at once ----------------------------------------


def test_a_broken_file_dropped_whole_is_rejected_at_once_not_after_ten_minutes(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    assert settings.watch.incomplete_timeout_seconds >= 600
    inbox = settings.watch.paths[0]
    with capture_logs() as logs, Running(settings):
        truncated_zip(inbox / "cut.zip", tmp_path)
        still = (inbox / "writing.zip").open("wb")  # a copy still going: kept open
        still.write(b"PK\x03\x04" + bytes(1000))
        still.flush()
        wait_for(
            lambda: rows(settings).get("cut.zip", {}).get("phase") == "rejected",
            20,
            "the broken zip rejected",
        )
        row = rows(settings)["cut.zip"]
        assert "broken" in str(row["reason"]) and "looked at again" in str(row["reason"])
        assert "(still copying?)" not in str(row["reason"])  # it is not: it is broken
        assert rows(settings)["writing.zip"]["phase"] in ("settling", "incomplete")
        still.close()
    # One problem, one message: not "waiting for the file to be complete" first.
    said = [e for e in logs if str(e.get("path", "")).endswith("cut.zip")]
    assert [(e["event"], e["log_level"]) for e in said] == [("not uploaded", "error")], said
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == 0


def test_upload_calls_a_broken_file_broken(emulator: EmulatorServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    cut = truncated_zip(tmp_path / "cut.zip", tmp_path)
    an_hour_ago = time.time() - 3600
    os.utime(cut, (an_hour_ago, an_hour_ago))
    result = run_cli("--config", str(config), "upload", str(cut))
    assert result.returncode == 1
    assert "is broken" in result.stderr + result.stdout
    assert "wait for the copy" not in result.stderr + result.stdout
    assert "(still copying?)" not in result.stderr + result.stdout  # it is not: it is broken
    # `check` says the same of it, in the same words.
    checked = run_cli("--config", str(config), "check", str(cut))
    assert checked.returncode == 1
    assert "has not changed for" in checked.stdout and "is broken" in checked.stdout
    assert "still copying" not in checked.stdout and "not complete yet" not in checked.stdout


# -- 2. READY soon, and --follow says what happens ----------------------------------------


def test_the_poll_schedule_starts_soon_and_backs_off_to_the_interval() -> None:
    schedule = PollSchedule(30.0, first=2.0, rng=random.Random(1))
    assert schedule.wait(0.0) is None  # nothing followed: no listing at all
    schedule.track([1], now=100.0)
    assert schedule.wait(100.0) == pytest.approx(2.0)
    gaps, now = [], 102.0
    for _ in range(8):
        schedule.polled(now)
        wait = schedule.wait(now)
        assert wait is not None
        gaps.append(wait)
        now += wait
    assert gaps[0] == pytest.approx(4.0, rel=0.16) and gaps[1] == pytest.approx(8.0, rel=0.16)
    assert all(b >= a * 0.8 for a, b in itertools.pairwise(gaps))
    assert max(gaps) <= 30.0 * 1.15 and gaps[-1] >= 30.0 * 0.85
    # A capture uploaded just after a listing is due soon; listings stay `first` apart.
    schedule.polled(now)
    schedule.track([1, 2], now=now + 0.5)
    assert schedule.wait(now + 0.5) == pytest.approx(2.0)
    assert PollSchedule(30.0, first=2.0).wait(0.0) is None
    schedule.track([], now=now)
    assert schedule.wait(now) is None


def test_ready_is_seen_seconds_after_processing_ends_not_a_poll_interval_later(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, poll={"interval_seconds": 120})
    inbox = settings.watch.paths[0]
    with Running(settings):
        make_zip(inbox / "scan.zip", images=3)
        wait_for(
            lambda: rows(settings).get("scan.zip", {}).get("capture_state") == "READY",
            40,
            "READY well within the 120 s interval",
        )


def test_follow_shows_each_state_as_it_changes_and_where_the_results_are(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    config = write_config(
        tmp_path / "config.toml", emulator, extra=f'[results]\ndir = "{models}"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scan = make_zip(elsewhere / "scan.zip", images=3)
    result = run_cli("--config", str(config), "upload", "--follow", str(scan))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("scan.zip: ")]
    states = [line.split(": ", 1)[1].split(" (")[0] for line in lines]
    assert states[-1] == "READY" and len(states) >= 2
    assert "(after " in lines[-1]
    # 4. A file from outside the watched folders: results under its name, and said where.
    folder = models / "scan.zip"
    assert (folder / "ply" / "model.ply").read_bytes().startswith(b"ply\n")
    assert f"results in {folder}" in result.stdout


def test_two_files_of_one_name_from_elsewhere_get_a_results_folder_each(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    config = write_config(
        tmp_path / "config.toml", emulator, extra=f'[results]\ndir = "{models}"\n'
    )
    for place, images in (("a", 3), ("b", 5)):
        (tmp_path / place).mkdir()
        make_zip(tmp_path / place / "x.zip", images=images)
        result = run_cli("--config", str(config), "upload", "--follow", str(tmp_path / place))
        assert result.returncode == 0, result.stdout + result.stderr
    folders = sorted(p.parent.parent for p in models.rglob("model.ply"))
    assert len(folders) == 2 and folders[0] == models / "x.zip"
    assert folders[1].name.startswith("x.zip.")


# -- 3. errors that help ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[watch]\npath = ["/x"]\n', "did you mean `paths`?"),
        ('[wach]\npaths = ["/x"]\n', "unknown section (did you mean [watch]?)"),
        ('paths = ["/x"]\n', "is a key of [watch]"),
        ("[upload]\nbudget = 3\n", "[budget] is a section of its own"),
        ('[results]\nprofile = ["ply"]\n', "did you mean `profiles`?"),
    ],
)
def test_a_config_typo_gets_a_suggestion(tmp_path: Path, toml: str, says: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    result = run_cli("--config", str(config), "status")
    assert result.returncode == 2
    assert says in result.stderr and "teleport-sync config example" in result.stderr


def test_config_example_prints_a_config_that_loads(tmp_path: Path) -> None:
    result = run_cli("config", "example")
    assert result.returncode == 0
    data = tomllib.loads(result.stdout)
    assert {"api", "watch", "upload", "results"} <= set(data)
    shipped = Path(__file__).parent.parent / "config.example.toml"
    assert result.stdout == shipped.read_text()
    Settings(**{k: v for k, v in data.items() if k != "api"})


def test_a_missing_root_and_a_stopped_daemon_are_explained(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    missing = tmp_path / "not-mounted-yet"
    config = write_config(
        tmp_path / "config.toml", emulator, extra=f'[watch]\npaths = ["{missing}"]\n'
    )
    check = run_cli("--config", str(config), "config", "check")
    assert check.returncode == 2
    assert "watches it as soon as it is a folder" in check.stderr
    missing.mkdir()
    health = run_cli("--config", str(config), "health")
    assert health.returncode == 1
    assert "teleport-sync run" in health.stdout and "where it runs as a service" in health.stdout


# -- 5. help that fits --------------------------------------------------------------------


def test_top_level_help_lines_are_whole_and_verbose_is_global(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    shown = run_cli("--help").stdout
    commands = shown.split("Commands:", 1)[1].strip().splitlines()
    assert len(commands) >= 14
    assert not [line for line in commands if line.rstrip().endswith("...")]
    assert "-v, --verbose" in shown.split("Commands:", 1)[0]
    assert "contract" not in run_cli("status", "--help").stdout
    config = write_config(tmp_path / "config.toml", emulator)
    quiet = run_cli("--config", str(config), "upload", str(make_zip(tmp_path / "a.zip")))
    loud = run_cli("--config", str(config), "-v", "upload", str(make_zip(tmp_path / "b.zip")))
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    # `upload` keeps the screen for its progress bars; a global -v brings the log back.
    assert "uploaded" not in quiet.stderr and "uploaded" in loud.stderr
