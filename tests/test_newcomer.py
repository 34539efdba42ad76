"""What a newcomer following the README word for word tripped on: a folder's .mov left out of
`check` and `upload` although the daemon takes it, one kind of file refused in two different
sentences, and `config check` saying "from (not set)"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from teleport_sync.daemon.intake import not_taken_reason
from teleport_sync.emulator.server import EmulatorServer

from .conftest import write_config
from .helpers import make_zip
from .test_cli import run_cli
from .test_not_taken import make_mov, needs_tools, video_packets


@needs_tools
def test_check_and_upload_of_a_folder_take_its_mov_as_the_daemon_does(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    movie = make_mov(shoot / "IMG_0042.MOV", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    (shoot / "notes.txt").write_text("shot on tuesday")  # not an input: not expanded

    checked = run_cli("--config", str(config), "check", "--json", str(shoot))
    assert checked.returncode in (0, 1), checked.stderr
    assert [r["path"] for r in json.loads(checked.stdout)] == [str(movie)]

    uploaded = run_cli("--config", str(config), "upload", str(shoot))
    assert uploaded.returncode == 0, uploaded.stderr + uploaded.stdout
    rows = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    assert [(r["path"], r["upload_state"]) for r in rows] == [(str(movie), "uploaded")]
    sent = emulator.object_bytes(str(rows[0]["eid"]))
    assert video_packets(sent) == video_packets(movie), "its remux, the same packets"
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == 1


def test_a_file_of_another_type_is_refused_in_one_sentence_everywhere(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    notes = tmp_path / "notes.txt"
    notes.write_text("shot on tuesday")
    daemon_says = not_taken_reason(notes, ["*.zip", "*.mp4", "*.mov"])
    assert daemon_says == f"{notes}: not a capture (zip, mp4 or mov wanted): a .txt file; " + (
        "it is left as it is"
    )
    checked = run_cli("--config", str(config), "check", "--json", str(notes))
    assert checked.returncode == 1
    [result] = json.loads(checked.stdout)
    assert result["reasons"] == [daemon_says.removesuffix("; it is left as it is")]
    uploaded = run_cli("--config", str(config), "upload", str(notes))
    assert uploaded.returncode != 0
    assert "not a capture (zip, mp4 or mov wanted): a .txt file" in uploaded.stderr
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == 0


def test_a_mov_left_out_by_include_names_include_not_a_wrong_format(tmp_path: Path) -> None:
    movie = tmp_path / "IMG_0042.mov"
    said = not_taken_reason(movie, ["*.zip", "*.mp4"])
    assert "[watch] include (*.zip, *.mp4) leaves it out" in said
    assert 'add "*.mov"' in said and "ffmpeg -i" in said
    assert "not an MP4" not in said


def test_config_check_says_not_set_plainly_and_that_run_needs_a_watch_folder(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)  # no [watch] paths
    checked = run_cli("--config", str(config), "config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "watch:         (none: `run` needs [watch] paths" in checked.stdout
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[journal]\npath = "{tmp_path / "journal.sqlite3"}"\n')
    checked = run_cli("--config", str(bare), "config", "check")
    assert checked.returncode == 2
    assert "client secret: (not set)" in checked.stdout
    assert "from (not set)" not in checked.stdout


def test_health_says_everything_is_paused_not_a_star(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    assert run_cli("--config", str(config), "pause").returncode == 0
    health = run_cli("--config", str(config), "health")
    assert "paused:  everything (teleport-sync resume)" in health.stdout, health.stdout
    as_json = json.loads(run_cli("--config", str(config), "health", "--json").stdout)
    assert as_json["paused"] == ["*"]  # the JSON keeps the journal's own value


def test_check_pose_without_pycolmap_says_so_in_one_line_and_exits_2(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    scan = make_zip(tmp_path / "scan.zip")
    # pycolmap cannot be imported in this process, as on ARM Linux (None in sys.modules makes
    # find_spec and import fail), whatever this machine has installed.
    hidden = (
        "import sys; sys.modules['pycolmap'] = None; from teleport_sync.cli import main; main()"
    )
    args = ["--config", str(config), "check", "--pose", str(scan)]
    result = subprocess.run(
        [sys.executable, "-c", hidden, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: check --pose cannot run: ")
    assert "pip install 'teleport-sync[pose]'" in lines[0]
    assert result.stdout == ""


@needs_tools
def test_a_movs_failed_part_names_the_movie_not_its_remux_in_the_work_folder(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    movie = make_mov(tmp_path / "IMG_0042.MOV", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    emulator.config.wrong_etag_rate = 1.0  # every part arrives "corrupted": the upload fails
    try:
        uploaded = run_cli("--config", str(config), "upload", str(movie))
    finally:
        emulator.config.wrong_etag_rate = 0.0
    assert uploaded.returncode == 1, uploaded.stdout + uploaded.stderr
    [row] = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    assert row["upload_state"] == "failed"
    assert row["error"].startswith(f"{movie}: part 1/1 of {movie.name} arrived corrupted")
    assert "work" not in row["error"]


def test_resume_of_a_folder_resumes_the_files_paused_below_it_and_says_what(
    tmp_path: Path,
) -> None:
    from teleport_sync.journal import Journal

    config = tmp_path / "control.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "journal.sqlite3"}"\n', encoding="utf-8")
    inbox = tmp_path / "inbox"
    walk = inbox / "site" / "walk.mp4"
    assert run_cli("--config", str(config), "pause", str(walk)).returncode == 0
    resumed = run_cli("--config", str(config), "resume", str(inbox))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == f"resumed: {walk}"
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.paused_paths() == []
    # Nothing paused there: said so, not "resumed".
    again = run_cli("--config", str(config), "resume", str(inbox))
    assert again.returncode == 0 and again.stdout == ""
    assert f"not paused: {inbox}" in again.stderr


def test_every_groups_help_lines_are_whole() -> None:
    for group in ("captures", "config", "notify"):
        shown = run_cli(group, "--help").stdout
        commands = shown.split("Commands:", 1)[1].strip().splitlines()
        assert commands, shown
        assert not [line for line in commands if line.rstrip().endswith("...")], shown


def test_upload_and_check_say_a_missing_path_alike(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", emulator)
    missing = tmp_path / "nosuch.zip"
    for command in ("upload", "check"):
        result = run_cli("--config", str(config), command, str(missing))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.strip() == f"error: no such file: {missing}", command
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == 0


def test_upload_runs_without_the_preflight_extra(emulator: EmulatorServer, tmp_path: Path) -> None:
    # A bare `pip install teleport-sync`: no numpy, Pillow, PyAV or pycolmap (None in
    # sys.modules makes their import fail, whatever this machine has). Every upload imports
    # the pre-flight gate; a threshold imported from the numpy-using measures once made it
    # fail with ModuleNotFoundError before a byte was sent.
    config = write_config(tmp_path / "config.toml", emulator)
    scan = make_zip(tmp_path / "scan.zip", pad=300_000)
    hidden = (
        "import sys\n"
        "for name in ('numpy', 'PIL', 'av', 'pycolmap', 'pillow_heif'):\n"
        "    sys.modules[name] = None\n"
        "from teleport_sync.cli import main\n"
        "main()\n"
    )
    args = ["--config", str(config), "upload", str(scan)]
    result = subprocess.run(
        [sys.executable, "-c", hidden, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ModuleNotFoundError" not in result.stderr
    rows = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    assert [(r["path"], r["upload_state"]) for r in rows] == [(str(scan), "uploaded")]
    assert emulator.object_bytes(str(rows[0]["eid"])) == scan.read_bytes()
