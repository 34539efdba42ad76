"""The CLI as users run it: a subprocess, exit codes, one clear line on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from teleport_sync.emulator.server import EmulatorServer

from .conftest import write_config


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "teleport_sync", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_help_and_version() -> None:
    assert run_cli("--help").returncode == 0
    version = run_cli("--version")
    assert version.returncode == 0 and "teleport-sync" in version.stdout


def test_captures_list_json(emulator: EmulatorServer, config_file: Path) -> None:
    result = run_cli("--config", str(config_file), "captures", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert emulator.stats.count("token", "POST") == 1


def test_captures_rename_and_delete(emulator: EmulatorServer, config_file: Path) -> None:
    capture = emulator.backend.create("before", 10, "video")
    renamed = run_cli("--config", str(config_file), "captures", "rename", capture.eid, "after")
    assert renamed.returncode == 0, renamed.stderr
    assert emulator.backend.get(capture.eid).name == "after"
    deleted = run_cli("--config", str(config_file), "captures", "delete", capture.eid)
    assert deleted.returncode == 0
    assert capture.eid not in emulator.backend.captures
    missing = run_cli("--config", str(config_file), "captures", "delete", capture.eid)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_wrong_secret_from_environment_overrides_the_file(
    emulator: EmulatorServer, config_file: Path
) -> None:
    result = run_cli(
        "--config",
        str(config_file),
        "captures",
        "list",
        "--json",
        env={"TELEPORT_SYNC_API__CLIENT_SECRET": "wrong-secret-XYZ"},
    )
    assert result.returncode == 1
    assert "authentication failed" in result.stderr
    combined = result.stdout + result.stderr
    assert emulator.config.client_secret not in combined
    assert "wrong-secret-XYZ" not in combined
    assert len(result.stderr.strip().splitlines()) == 1


def test_loose_permissions_are_refused_with_the_fix(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "loose.toml", emulator, mode=0o644)
    result = run_cli("--config", str(cfg), "captures", "list")
    assert result.returncode == 2
    assert f"chmod 600 {cfg}" in result.stderr
    assert emulator.config.client_secret not in result.stderr


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[api]\nbase_url = "http://teleport.example.com"\nclient_id = "x"\n')
    result = run_cli("--config", str(cfg), "captures", "list")
    assert result.returncode == 2
    assert "[api] base_url" in result.stderr and "https://" in result.stderr


def test_config_check_reaches_the_api(emulator: EmulatorServer, config_file: Path) -> None:
    result = run_cli("--config", str(config_file), "config", "check")
    assert result.returncode == 0, result.stderr
    assert "api access:    ok" in result.stdout
    assert f"from {config_file}" in result.stdout
    assert emulator.config.client_secret not in result.stdout


def test_config_check_with_a_wrong_secret_is_a_config_error(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", emulator)
    config.write_text(config.read_text().replace(emulator.config.client_secret, "not-the-secret"))
    result = run_cli("--config", str(config), "config", "check")
    assert result.returncode == 2, result.stdout + result.stderr  # DESIGN §1: config error
    assert "api access:    ok" not in result.stdout
    assert "authentication failed" in result.stderr
    assert f"the secret used came from {config} ([api] client_secret)" in result.stderr
    assert "not-the-secret" not in result.stdout + result.stderr


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "nope.toml"), "captures", "list")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_emulator_knobs_from_the_command_line() -> None:
    from teleport_sync.cli.setup import _set_knobs
    from teleport_sync.emulator.faults import EmulatorConfig

    config = EmulatorConfig()
    _set_knobs(
        config,
        ("put_delay_seconds=0.5", "slow_creates=2", "opaque_etags=true", "failed_state_name=ERROR"),
    )
    assert (config.put_delay_seconds, config.slow_creates) == (0.5, 2)
    assert config.opaque_etags is True and config.failed_state_name == "ERROR"
    for bad in ("no_such_knob=1", "put_delay_seconds", "slow_creates=many"):
        with pytest.raises(SystemExit) as exited:
            _set_knobs(config, (bad,))
        assert exited.value.code == 2
    assert "--knob" in run_cli("emulator", "--help").stdout
