"""The bandwidth limiter on the real sending paths (sendfile and streamed blocks), the upload
window as a gate, and training parameters on the create request; emulator over loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from teleport_sync.api import TeleportClient, build_client, default_transport
from teleport_sync.api.filebody import FileRegion
from teleport_sync.api.transport import LazyTLSTransport
from teleport_sync.config import ConfigError, load_settings
from teleport_sync.control import Control
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.engine import Paused, Uploader
from teleport_sync.journal import Journal
from teleport_sync.limits import BandwidthLimiter, parse_bwlimit
from teleport_sync.retry import RetryPolicy

from .conftest import FakeClock, write_config
from .helpers import MIB, make_zip

MODELV3 = {
    "splat_count": 1_000_000,
    "training_resolution": 2500,
    "spherical_harmonics_degrees": 3,
    "level_of_detail": False,
}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=41, chunk_size=5 * MIB, processing_delay_seconds=60)


@pytest.fixture(params=["stdlib+sendfile", "httpcore"])
def client(emulator: EmulatorServer, request: pytest.FixtureRequest) -> Iterator[TeleportClient]:
    with build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
        policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
        transport=default_transport if request.param == "stdlib+sendfile" else LazyTLSTransport,
    ) as c:
        yield c


class RecordingClock(FakeClock):
    """Sleeps are recorded, not slept (threads share it, so guard the sum)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


def test_every_byte_of_every_part_passes_the_shared_limiter(
    client: TeleportClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    source = make_zip(tmp_path / "paced.zip", images=2, pad=12 * MIB)  # 3 parts
    seen: list[int] = []
    lock = threading.Lock()
    limiter = BandwidthLimiter(
        parse_bwlimit("4M"), clock=RecordingClock(), now=datetime.now, burst_seconds=0.0
    )

    def throttle(nbytes: int) -> None:
        with lock:
            seen.append(nbytes)
        limiter.consume(nbytes)

    with Journal(tmp_path / "journal.sqlite3") as journal:
        uploader = Uploader(client, journal, concurrency=3, throttle=throttle)
        result = uploader.upload(source)
    assert sum(seen) == source.stat().st_size
    # Sliced finely enough to pace (sendfile: 256 KiB; streamed: 1 MiB blocks).
    assert max(seen) <= 1 * MIB
    assert emulator.object_bytes(result.eid) == source.read_bytes()
    # Time granted, as one sender would need it: the file's size at 4 MiB/s, less one slice.
    granted = max(limiter._clock.sleeps)  # type: ignore[attr-defined]
    assert granted == pytest.approx(source.stat().st_size / (4 * MIB) - seen[-1] / (4 * MIB))


def test_a_file_region_streams_through_the_throttle(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    paced: list[int] = []
    region = FileRegion(data, 1000, 300_000, block_size=64 * 1024, throttle=paced.append)
    assert b"".join(region) == data.read_bytes()[1000:301_000]
    assert sum(paced) == 300_000 and max(paced) == 64 * 1024


def test_a_closed_window_starts_no_part_and_no_capture(
    client: TeleportClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    source = make_zip(tmp_path / "night.zip", images=2)
    monday_noon = datetime(2026, 11, 23, 12, 0)
    limiter = BandwidthLimiter(
        parse_bwlimit("Mon-Fri 08:00,0 19:00,off"), clock=FakeClock(), now=lambda: monday_noon
    )
    with Journal(tmp_path / "journal.sqlite3") as journal:
        control = Control(journal, limiter=limiter)
        uploader = Uploader(client, journal, gate=control.gate, throttle=limiter.consume)
        with pytest.raises(Paused, match=r"upload window is closed .* 7 h 0 min"):
            uploader.upload(source)
        assert emulator.stats.count("api", "POST", "/captures") == 0
        record = journal.by_path(str(source))
        assert record is not None and record.upload_state == "pending"


def test_training_parameters_reach_the_create_request(
    client: TeleportClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    source = make_zip(tmp_path / "trained.zip", images=2)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        uploader = Uploader(client, journal, training_parameters={"modelv3": MODELV3})
        eid = uploader.upload(source).eid
    assert emulator.backend.get(eid).training_parameters == {"modelv3": MODELV3}


def test_config_refuses_bad_bwlimit_and_out_of_range_training_parameters(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    bad_rate = write_config(tmp_path / "a.toml", emulator, '[upload]\nbwlimit = "Mon-Fri 8h,1M"')
    with pytest.raises(ConfigError, match=r"\[upload\] bwlimit: '8h' is not a time of day"):
        load_settings(bad_rate, environ={})
    params = dict(MODELV3, splat_count=100, training_resolution=2000)
    table = "\n".join(f"{k} = {str(v).lower()}" for k, v in params.items())
    bad_params = write_config(
        tmp_path / "b.toml", emulator, f"[upload.training_parameters.modelv3]\n{table}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(bad_params, environ={})
    message = str(caught.value)
    assert "[upload] training_parameters" in message
    assert "modelv3.splat_count = 100 must be an integer from 500000 to 10000000" in message
    assert "modelv3.training_resolution = 2000 must be 1600, 2500 or 3200" in message
    good = write_config(tmp_path / "c.toml", emulator, '[upload]\nbwlimit = "08:00,512k 19:00,off"')
    assert load_settings(good, environ={}).upload.bwlimit == "08:00,512k 19:00,off"


def test_upload_bwlimit_option_is_checked_and_used(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    config = write_config(tmp_path / "config.toml", emulator)
    source = make_zip(tmp_path / "cli.zip", images=2)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "teleport_sync", "--config", str(config), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=60)

    bad = run("upload", "--bwlimit", "lots", str(source))
    assert bad.returncode == 2 and "--bwlimit: 'lots' is not a rate" in bad.stderr
    closed = run("upload", "--bwlimit", "0", str(source))
    assert closed.returncode == 1 and "set another rate" in closed.stdout + closed.stderr
    assert emulator.stats.count("api", "POST", "/captures") == 0
    paced = run("upload", "--bwlimit", "64M", str(source))
    assert paced.returncode == 0, paced.stderr
    assert emulator.stats.count("api", "POST", "/captures") == 1
