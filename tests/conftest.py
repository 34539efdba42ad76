"""Shared fixtures: a real emulator on loopback, config files, a fake clock."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer


@dataclass
class FakeClock:
    """A clock for retry and token logic: `sleep` advances time instantly and is recorded."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test module to change knobs before the emulator starts."""
    return EmulatorConfig(seed=1234, processing_delay_seconds=1.0)


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator_config) as server:
        yield server


def write_config(path: Path, emulator: EmulatorServer, extra: str = "", mode: int = 0o600) -> Path:
    """A config file pointing at `emulator`, holding its secret, with `mode` permissions."""
    cfg = emulator.config
    path.write_text(
        f"""
[api]
base_url = "{emulator.url}"
auth_url = "{emulator.token_url}"
client_id = "{cfg.client_id}"
client_secret = "{cfg.client_secret}"
timeout_seconds = 20

[journal]
path = "{path.parent / "journal.sqlite3"}"
{extra}
""",
        encoding="utf-8",
    )
    os.chmod(path, mode)
    return path


@pytest.fixture
def config_file(tmp_path: Path, emulator: EmulatorServer) -> Path:
    return write_config(tmp_path / "config.toml", emulator)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TELEPORT_SYNC_* or systemd credential variables from the outer environment."""
    for key in list(os.environ):
        if key.startswith("TELEPORT_SYNC_") or key in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads running (they would hang the suite)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"test leaked threads: {leaked}"
