"""`health`, authentication failures, late watch roots and SIGHUP: the daemon as run for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal

from .conftest import write_config
from .helpers import MIB, make_mp4, wait_for
from .test_cli import run_cli
from .test_daemon import Running, free_port, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=7, chunk_size=5 * MIB, processing_delay_seconds=0.3)


def fact(journal_path: Path, key: str) -> object:
    if not journal_path.exists():
        return None
    with Journal(journal_path, check_integrity=False) as journal:
        value = journal.fact(key)
    return json.loads(value) if value else None


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def start_daemon(config: Path, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """`run` as a subprocess, its log going to daemon.log beside the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    with (config.parent / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "teleport_sync", "--config", str(config), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    started.append(process)
    return process


def test_health_names_authentication_while_the_daemon_runs_with_a_wrong_secret(
    emulator: EmulatorServer, tmp_path: Path, daemon_process: list[subprocess.Popen[bytes]]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # The claim is confirmed in 0.1 s (not the default 3 s), so health reads a settled claim.
    watch = f'[watch]\npaths = ["{inbox}"]\nclaim_settle_seconds = 0.1\n'
    config = write_config(tmp_path / "config.toml", emulator, extra=watch)
    config.write_text(config.read_text().replace(emulator.config.client_secret, "wrong-secret"))
    journal = tmp_path / "journal.sqlite3"
    process = start_daemon(config, daemon_process)
    wait_for(lambda: (fact(journal, "auth") or {}).get("ok") is False, 20, "the auth failure")
    make_mp4(inbox / "clip.mp4", 1 * MIB)
    wait_for(lambda: "clip.mp4" in {Path(p).name for p in _status_paths(config)}, 20, "the row")

    result = run_cli("--config", str(config), "health", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["daemon"] == {"running": True, "pid": process.pid}
    assert report["auth"]["ok"] is False and report["auth"]["since"]
    assert "authentication failed" in report["auth"]["error"]
    assert "wrong-secret" not in result.stdout
    assert report["roots"] == [
        {
            "path": str(inbox),
            "watched": True,
            "problem": None,
            "polled": False,
            "filesystem": report["roots"][0]["filesystem"],
            # One live journal per folder: no other journal claims it, none was taken over.
            "claimed_by": None,
            "taken_over_from": None,
            "claim_confirming_until": None,  # confirmed: this station owns the folder
        }
    ]
    human = run_cli("--config", str(config), "health")
    assert human.returncode == 1 and "AUTHENTICATION FAILING" in human.stdout

    status = json.loads(run_cli("--config", str(config), "status", "--json").stdout)
    [row] = [r for r in status if r["path"].endswith("clip.mp4")]
    assert row["phase"] in ("settling", "queued", "failed")
    wait_for(
        lambda: "authentication" in str(_row(config, "clip.mp4").get("reason")), 20, "the reason"
    )
    # One failure, then backoff: no storm of token requests, no misleading crash talk.
    assert emulator.stats.count("token", "POST") <= 3
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    output = (tmp_path / "daemon.log").read_text()
    assert output.count("authentication failed;") == 1 and "before a crash" not in output
    after = run_cli("--config", str(config), "health", "--json")
    assert after.returncode == 1 and json.loads(after.stdout)["daemon"]["running"] is False


def _status_paths(config: Path) -> list[str]:
    result = run_cli("--config", str(config), "status", "--json")
    return [r["path"] for r in json.loads(result.stdout or "[]")]


def _row(config: Path, name: str) -> dict[str, object]:
    result = run_cli("--config", str(config), "status", "--json")
    found = [r for r in json.loads(result.stdout or "[]") if r["path"].endswith(name)]
    return found[0] if found else {}


def test_a_late_root_is_watched_and_health_turns_ok(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    late = tmp_path / "nas" / "inbox"
    settings = settings_for(emulator, tmp_path, watch={"paths": [late], "settle_seconds": 0.3})
    config = write_config(
        tmp_path / "config.toml", emulator, extra=f'[watch]\npaths = ["{late}"]\n'
    )
    with Running(settings, root_check_seconds=0.2):
        wait_for(lambda: (fact(settings.journal.path, "auth") or {}).get("ok") is True, 20, "auth")
        result = run_cli("--config", str(config), "health", "--json")
        assert result.returncode == 1
        [root] = json.loads(result.stdout)["roots"]
        assert root["watched"] is False and "does not exist" in root["problem"]

        late.mkdir(parents=True)  # the NAS is mounted
        make_mp4(late / "clip.mp4", 1 * MIB)
        wait_for(lambda: rows(settings).get("clip.mp4", {}).get("phase") == "done", 30, "done")
        healthy = run_cli("--config", str(config), "health", "--json")
        assert healthy.returncode == 0, healthy.stdout
        report = json.loads(healthy.stdout)
        assert report["ok"] and report["roots"][0]["watched"] and report["counts"] == {"done": 1}


def test_sighup_adds_a_watch_path_and_a_bad_config_is_refused(
    emulator: EmulatorServer, tmp_path: Path, daemon_process: list[subprocess.Popen[bytes]]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    watch = '[watch]\npaths = ["{}"]\nsettle_seconds = 0.3\n[poll]\ninterval_seconds = 0.3\n'
    config = write_config(tmp_path / "config.toml", emulator, extra=watch.format(first))
    process = start_daemon(config, daemon_process)
    journal = tmp_path / "journal.sqlite3"
    wait_for(lambda: (fact(journal, "auth") or {}).get("ok") is True, 20, "the daemon")

    good = config.read_text()
    config.write_text(good.replace("[watch]", "[watch]\nno_such_key = 1"))
    process.send_signal(signal.SIGHUP)
    log = tmp_path / "daemon.log"
    wait_for(lambda: "config not reloaded" in log.read_text(), 20, "the refusal")
    assert "no_such_key" in log.read_text() and process.poll() is None
    config.write_text(good.replace(f'paths = ["{first}"]', f'paths = ["{first}", "{second}"]'))
    os.chmod(config, 0o600)
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: len(fact(journal, "roots") or []) == 2, 20, "the second root")
    make_mp4(second / "clip.mp4", 1 * MIB)
    wait_for(lambda: _row(config, "clip.mp4").get("capture_state") == "READY", 30, "the upload")
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert "config reloaded" in log.read_text()


def test_the_units_reload_with_sighup() -> None:
    units = sorted((Path(__file__).parent.parent / "systemd").glob("*.service"))
    assert units and all("ExecReload=/bin/kill -HUP $MAINPID" in u.read_text() for u in units)


def _console(port: int, token: str) -> int | None:
    """The console's answer to `token` on `port`, or None when nothing listens there."""
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/files",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except httpx.ConnectError:
        return None
    return answer.status_code


def test_sighup_restarts_the_web_console_on_a_changed_listen_and_token(
    emulator: EmulatorServer, tmp_path: Path, daemon_process: list[subprocess.Popen[bytes]]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = free_port(), free_port()
    web = '[watch]\npaths = ["{}"]\n[web]\nlisten = "127.0.0.1:{}"\ntoken = "{}"\n'
    config = write_config(
        tmp_path / "config.toml", emulator, extra=web.format(inbox, first, "first-token-1234")
    )
    process = start_daemon(config, daemon_process)
    wait_for(lambda: _console(first, "first-token-1234") == 200, 20, "the console")

    config.write_text(
        config.read_text()
        .replace(f"127.0.0.1:{first}", f"127.0.0.1:{second}")
        .replace("first-token-1234", "second-token-5678")
    )
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: _console(second, "second-token-5678") == 200, 20, "the console moved")
    assert _console(second, "first-token-1234") == 401, "the old token no longer opens it"
    assert _console(first, "first-token-1234") is None, "the old address is closed"

    # The token alone changes: the same port is taken again.
    config.write_text(config.read_text().replace("second-token-5678", "third-token-9012"))
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: _console(second, "third-token-9012") == 200, 20, "the new token")
    assert _console(second, "second-token-5678") == 401
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert log.count("web console restarted") == 2
    assert "token-" not in log, "a console token never reaches the log"
