"""The metrics a fleet's alerts and dashboard read (deploy/): how long files wait by phase, when
the upload window opens, the journal's disk, captures to delete, frames and spend; as units on
fake clocks and real journals, then from a real daemon's /metrics."""

from __future__ import annotations

import math
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from teleport_sync import __version__
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.limits import BandwidthLimiter, parse_bwlimit
from teleport_sync.models import FileIdentity
from teleport_sync.status.ages import WAITING_PHASES, oldest_by_phase
from teleport_sync.status.metrics import Metrics, UploadWindow
from teleport_sync.status.report import status_rows

from .conftest import FakeClock
from .helpers import MIB, make_zip, wait_for
from .test_daemon import Running, all_ready, free_port, settings_for

# 2026-11-23 is a Monday.
MONDAY = datetime(2026, 11, 23)
IDENTITY = FileIdentity(1, 2, 300, 4, "f" * 32)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


# -- the upload window ------------------------------------------------------------------------


def test_the_timetable_says_when_a_closed_window_opens() -> None:
    office = parse_bwlimit("Mon-Fri 08:00,0 19:00,2M")
    assert office.opens_in(at(0, 9)) == 10 * 60
    assert office.opens_in(at(0, 20)) == 0  # open now
    # Over the week's end: rclone's form, closed from Saturday until Monday 08:00.
    weekend = parse_bwlimit("Mon-08:00,1M Sat-00:00,0")
    assert weekend.opens_in(at(6, 12)) == 20 * 60
    # Two closed slots in a row are one closure.
    night = parse_bwlimit("20:00,0 23:00,0 06:00,off")
    assert night.opens_in(at(2, 21)) == 9 * 60
    assert parse_bwlimit("0").opens_in(at(0, 9)) is None  # nothing ever opens it


def test_the_window_gauges_follow_the_limiter() -> None:
    clock = FakeClock()
    wall = [at(0, 7, 30)]
    limiter = BandwidthLimiter(
        parse_bwlimit("Mon-Fri 08:00,0 19:00,3M"),
        clock=clock,
        now=lambda: wall[0],
        recheck_seconds=0.0,
    )
    window = UploadWindow(clock=clock.monotonic)
    assert window.is_open() and window.closed_seconds() == 0 and window.opens_in_seconds() == 0
    window.follow(limiter)
    assert window.is_open()

    wall[0] = at(0, 8, 0)
    assert not window.is_open()  # the first look that sees it closed starts the count
    clock.advance(600)
    wall[0] = at(0, 8, 10)
    assert window.closed_seconds() == 600
    assert window.opens_in_seconds() == (19 - 8) * 3600 - 600

    wall[0] = at(0, 19, 0)
    assert window.is_open() and window.closed_seconds() == 0
    window.follow(BandwidthLimiter(parse_bwlimit("0"), clock=clock, now=lambda: wall[0]))
    assert window.opens_in_seconds() == math.inf


def test_metrics_export_the_window_and_the_journal_disk(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.watch_journal_disk(tmp_path)
    value = metrics.registry.get_sample_value
    st = os.statvfs(tmp_path)
    assert value("teleport_sync_journal_disk_size_bytes") == st.f_blocks * st.f_frsize
    free = value("teleport_sync_journal_disk_free_bytes")
    assert free is not None and 0 < free <= st.f_blocks * st.f_frsize
    assert value("teleport_sync_upload_window_open") == 1
    assert value("teleport_sync_build_info", {"version": __version__}) == 1

    metrics.watch_bwlimit(BandwidthLimiter(parse_bwlimit("0"), clock=FakeClock(), now=at0))
    assert value("teleport_sync_upload_window_open") == 0
    assert value("teleport_sync_upload_window_opens_in_seconds") == math.inf

    metrics.watch_journal_disk(tmp_path / "gone")  # no figure rather than a wrong one
    assert math.isnan(value("teleport_sync_journal_disk_free_bytes") or 0.0)


def at0() -> datetime:
    return at(0, 9)


def test_an_uploaded_capture_counts_its_frames_and_cost() -> None:
    metrics = Metrics()
    metrics.count_uploaded(frames=120, cost=2.5)
    metrics.count_uploaded(frames=None, cost=None)  # not counted, no prices
    value = metrics.registry.get_sample_value
    assert value("teleport_sync_files_uploaded_total") == 2
    assert value("teleport_sync_frames_uploaded_total") == 120
    assert value("teleport_sync_estimated_cost_total") == 2.5


# -- how long files wait ----------------------------------------------------------------------


def _row(phase: str, updated_at: str, **more: object) -> dict[str, object]:
    return {"path": f"/in/{phase}.zip", "phase": phase, "updated_at": updated_at, **more}


def test_oldest_by_phase_measures_each_phase_from_its_own_start() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def ago(minutes: float) -> str:
        return (now - timedelta(minutes=minutes)).isoformat()

    history = [
        {"state": "UPLOADED", "observed_at": ago(300), "applied": True},
        {"state": "READY", "observed_at": ago(1), "applied": False},  # seen too early: no start
        {"state": "PROCESSING", "observed_at": ago(200), "applied": True},
    ]
    rows = [
        # Retried a minute ago, failing for two hours: the run of failures counts.
        _row("failed", ago(1), upload_state="failed", path="/in/retried.zip"),
        # Failed on the server 30 minutes ago, uploaded long before.
        _row(
            "failed",
            ago(30),
            upload_state="uploaded",
            state_history=[
                {"state": "UPLOADED", "observed_at": ago(500), "applied": True},
                {"state": "FAILED", "observed_at": ago(30), "applied": True},
            ],
        ),
        # Processing since its upload completed, not since its last state.
        _row("processing", ago(200), upload_state="uploaded", state_history=history),
        _row("held", ago(45)),
        _row("queued", ago(5)),
        _row("queued", ago(15)),
        _row("done", ago(10_000)),  # waits for nothing
        _row("settling", ago(10_000)),
    ]
    oldest = oldest_by_phase(rows, {"/in/retried.zip": ago(120)}, now)
    assert set(oldest) == set(WAITING_PHASES)
    assert oldest["failed"] == 120 * 60
    assert oldest["processing"] == 300 * 60
    assert oldest["held"] == 45 * 60
    assert oldest["queued"] == 15 * 60
    assert oldest["paused"] == 0 and oldest["downloading"] == 0


def test_the_journal_knows_when_a_run_of_failures_began(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        assert journal.failing_since() == {}
        record = journal.register("/in/a.zip", IDENTITY, "bulk-images", "a.zip")
        for _ in range(3):
            journal.mark_uploading(record.id)
            journal.mark_failed(record.id, "HTTP 503")
        ok = journal.register("/in/ok.zip", IDENTITY, "bulk-images", "ok.zip")
        journal.mark_uploading(ok.id)
        journal.mark_failed(ok.id, "once")
        journal.mark_uploading(ok.id)
        journal.mark_uploaded(ok.id)  # got through: its failures are history

    # Age the events as three attempts an hour apart would have left them.
    conn = sqlite3.connect(tmp_path / "j.sqlite3")
    first = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ids = [r[0] for r in conn.execute("SELECT id FROM events WHERE kind = 'failed' ORDER BY id")]
    for hours, event_id in enumerate(ids[:3]):
        stamp = (first + timedelta(hours=hours)).isoformat(timespec="microseconds")
        conn.execute("UPDATE events SET at = ? WHERE id = ?", (stamp, event_id))
    conn.commit()
    conn.close()

    with Journal(tmp_path / "j.sqlite3") as journal:
        since = journal.failing_since()
        assert since == {"/in/a.zip": first.isoformat(timespec="microseconds")}
        later = first + timedelta(hours=5)
        oldest = oldest_by_phase(status_rows(journal), since, later)
    assert oldest["failed"] == 5 * 3600


# -- from a real daemon ----------------------------------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=23, chunk_size=5 * MIB, processing_delay_seconds=0.5)


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_a_daemon_exports_what_the_fleet_rules_read(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        metrics={"listen": f"127.0.0.1:{port}"},
        budget={"price_per_capture": 1.5, "price_per_frame": 0.25, "currency": "EUR"},
    )
    with Running(settings):
        started = scrape(port)
        make_zip(settings.watch.paths[0] / "take.zip", images=6, pad=6 * MIB)
        wait_for(all_ready(settings, {"take.zip"}), 30, "READY")
        wait_for(lambda: scrape(port)['teleport_sync_phase{phase="done"}'] == 1, 10, "done")
        after = scrape(port)

    assert started["teleport_sync_upload_window_open"] == 1
    assert started["teleport_sync_captures_to_delete"] == 0
    assert started["teleport_sync_journal_disk_free_bytes"] > 0
    assert after["teleport_sync_frames_uploaded_total"] == 6
    assert after["teleport_sync_estimated_cost_total"] == 1.5 + 6 * 0.25
    assert (
        after["teleport_sync_last_part_timestamp_seconds"]
        > started["teleport_sync_last_part_timestamp_seconds"]
    )
    for phase in WAITING_PHASES:  # every waiting phase has its series, 0 once all is done
        assert after[f'teleport_sync_oldest_seconds{{phase="{phase}"}}'] == 0
