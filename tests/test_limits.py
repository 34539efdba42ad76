"""Bandwidth rates, rclone-style timetables, the shared limiter and budgets: pure, fake clocks."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from teleport_sync.limits import (
    BandwidthLimiter,
    Budget,
    DayUsage,
    LimitError,
    budget_problem,
    check_bwlimit,
    describe_rate,
    estimated_cost,
    parse_bwlimit,
    parse_rate,
)

from .conftest import FakeClock

MIB = 1 << 20
# 2026-11-23 is a Monday.
MONDAY = datetime(2026, 11, 23)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY.replace(day=23 + day, hour=hour, minute=minute)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("off", None),
        ("OFF", None),
        ("0", 0.0),
        ("10M", 10 * MIB),
        ("10m", 10 * MIB),
        ("10MiB", 10 * MIB),
        ("512k", 512 * 1024),
        ("1.5G", 1.5 * (1 << 30)),
        ("100B", 100.0),
        ("512", 512 * 1024),  # rclone's default unit is KiB/s
        ("4M:100k", 4 * MIB),  # rclone's UP:DOWN, upload half
    ],
)
def test_rates_read_as_rclone_reads_them(text: str, rate: float | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "10X", "-5M", "M"])
def test_a_bad_rate_is_refused_with_the_syntax(text: str) -> None:
    with pytest.raises(LimitError, match="not a rate"):
        parse_rate(text)


def test_the_issue_timetable_applies_by_day_and_time() -> None:
    table = parse_bwlimit("Mon-Fri 08:00,10M 19:00,off")
    assert table.rate_at(at(0, 7, 59)) is None  # Monday before 08:00: Sunday's "off" wraps
    assert table.rate_at(at(0, 8, 0)) == 10 * MIB
    assert table.rate_at(at(2, 12)) == 10 * MIB  # Wednesday noon
    assert table.rate_at(at(4, 19, 0)) is None  # Friday evening
    assert table.rate_at(at(5, 9)) is None  # Saturday morning: no weekday entry applies
    assert table.rate_at(at(6, 23, 59)) is None


def test_rclone_every_day_and_per_day_forms() -> None:
    daily = parse_bwlimit("08:00,512k 12:00,10M 13:00,512k 18:00,30M 23:00,off")
    assert daily.rate_at(at(3, 12, 30)) == 10 * MIB
    assert daily.rate_at(at(3, 2)) is None  # before 08:00 the previous day's 23:00 holds
    assert daily.rate_at(at(6, 18, 1)) == 30 * MIB
    weekly = parse_bwlimit("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off")
    assert weekly.rate_at(at(2, 5)) == 512 * 1024
    assert weekly.rate_at(at(5, 9)) == 10 * MIB
    assert weekly.rate_at(at(5, 10)) == 1 * MIB
    assert weekly.rate_at(at(6, 21)) is None


def test_a_zero_slot_is_a_closed_window_with_the_time_it_opens() -> None:
    table = parse_bwlimit("Mon-Sun 00:00,0 22:00,off")
    assert table.rate_at(at(1, 14)) == 0
    assert table.next_change(at(1, 14)) == 8 * 60
    assert table.rate_at(at(1, 23)) is None


def test_bad_timetables_name_the_bad_part() -> None:
    with pytest.raises(LimitError, match="'Mun' is not a day"):
        parse_bwlimit("Mun-Fri 08:00,1M")
    with pytest.raises(LimitError, match="'25:00' is not a time"):
        parse_bwlimit("25:00,1M")
    with pytest.raises(ValueError, match="timetable such as"):
        check_bwlimit("08:00,lots")


def test_limiter_paces_bytes_to_the_rate_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = BandwidthLimiter(
        parse_bwlimit("4M"), clock=clock, now=lambda: MONDAY, burst_seconds=0.0
    )
    start = clock.now
    for _ in range(96):  # 24 MiB in 256 KiB slices
        limiter.consume(256 * 1024)
    # The last slice may start at 6 s - one slice's time; the total is 6 s within a slice.
    elapsed = clock.now - start
    assert 6.0 - 0.0625 - 1e-9 <= elapsed <= 6.0


def test_limiter_is_shared_by_threads() -> None:
    clock = FakeClock()
    lock = threading.Lock()

    class LockedClock:
        def monotonic(self) -> float:
            with lock:
                return clock.monotonic()

        def sleep(self, seconds: float) -> None:
            with lock:
                clock.sleeps.append(seconds)

    limiter = BandwidthLimiter(
        parse_bwlimit("1M"), clock=LockedClock(), now=lambda: MONDAY, burst_seconds=0.0
    )
    threads = [
        threading.Thread(target=lambda: [limiter.consume(64 * 1024) for _ in range(16)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 4 MiB at 1 MiB/s, time frozen: the waits granted add up as if one sender sent it all.
    assert max(clock.sleeps) == pytest.approx(4.0 - 1 / 16)


def test_limiter_off_and_closed_never_sleep() -> None:
    clock = FakeClock()
    for spec in ("off", "0"):
        limiter = BandwidthLimiter(parse_bwlimit(spec), clock=clock, now=lambda: MONDAY)
        for _ in range(100):
            limiter.consume(MIB)
    assert clock.sleeps == []


def test_limiter_follows_the_timetable_and_reports_changes() -> None:
    clock = FakeClock()
    wall = [at(0, 7, 59)]
    changes: list[float | None] = []
    limiter = BandwidthLimiter(
        parse_bwlimit("Mon-Fri 08:00,0 19:00,2M"),
        clock=clock,
        now=lambda: wall[0],
        on_change=changes.append,
    )
    assert limiter.window_open and limiter.rate == 2 * MIB
    wall[0] = at(0, 8, 0)
    clock.advance(1.0)
    assert not limiter.window_open
    reason = limiter.closed_reason()
    assert reason is not None and "11 h 0 min" in reason
    wall[0] = at(0, 19, 0)
    clock.advance(1.0)
    assert limiter.rate == 2 * MIB
    assert changes == [2 * MIB, 0, 2 * MIB]
    assert describe_rate(0) == "0 (upload window closed)"
    assert describe_rate(2 * MIB) == "2M/s"


def test_budget_names_the_limit_and_by_how_much() -> None:
    budget = Budget(max_frames_per_capture=8)
    assert budget_problem(budget, 11, DayUsage()) == (
        "11 frames exceed [budget] max_frames_per_capture (8) by 3"
    )
    assert budget_problem(budget, 8, DayUsage()) is None
    daily = Budget(max_frames_per_day=100, max_captures_per_day=3)
    problem = budget_problem(daily, 30, DayUsage(frames=80, captures=1))
    assert problem is not None and "max_frames_per_day (100) by 10" in problem
    problem = budget_problem(daily, 1, DayUsage(frames=0, captures=3))
    assert problem is not None and "max_captures_per_day (3) by 1" in problem
    assert budget_problem(Budget(), 10**6, DayUsage(10**9, 10**6)) is None


def test_estimated_cost_only_with_prices() -> None:
    assert estimated_cost(Budget(), 100) is None
    assert estimated_cost(Budget(price_per_capture=1.0, price_per_frame=0.01), 150) == 2.5
    assert estimated_cost(Budget(price_per_frame=0.5), None) == 0.0


def test_health_shows_the_limit_in_force(tmp_path: Path) -> None:
    from teleport_sync.journal import Journal
    from teleport_sync.status.health import health_report

    with Journal(tmp_path / "journal.sqlite3") as journal:
        journal.set_paused(["/srv/inbox/site"], True)
        report = health_report(journal, [], bwlimit="Mon-Sun 00:00,4M")
    assert report["paused"] == ["/srv/inbox/site"]
    assert report["bwlimit"]["bytes_per_second"] == 4 * MIB
    assert report["bwlimit"]["limit"] == "4M/s" and report["bwlimit"]["window_open"] is True
    assert "bwlimit" not in health_report(None, [])


def test_a_reloaded_bwlimit_reschedules_the_same_limiter(tmp_path: Path) -> None:
    from teleport_sync.control import Control
    from teleport_sync.journal import Journal

    clock = FakeClock()
    changes: list[float | None] = []
    limiter = BandwidthLimiter(
        parse_bwlimit("1M"), clock=clock, now=lambda: MONDAY, on_change=changes.append
    )
    limiter.set_timetable(parse_bwlimit("Mon-Sun 00:00,0 23:00,off"))
    assert limiter.rate == 0 and changes == [MIB, 0]
    limiter.set_timetable(parse_bwlimit("off"))
    limiter.consume(10 * MIB)
    assert clock.sleeps == [] and changes == [MIB, 0, None]
    with Journal(tmp_path / "journal.sqlite3") as journal:
        control = Control(journal)  # started with bwlimit "off": no limiter at all
        assert control.reconfigure(Budget(max_captures_per_day=2), "off") is None
        made = control.reconfigure(Budget(max_captures_per_day=2), "2M")
        assert made is not None and made.rate == 2 * MIB
        assert control.limiter is made and control.budget.max_captures_per_day == 2
        assert control.reconfigure(Budget(), "0") is made and not made.window_open


def test_status_says_why_files_wait_while_the_window_is_closed(tmp_path: Path) -> None:
    from teleport_sync.inputs import identify
    from teleport_sync.journal import Journal
    from teleport_sync.status.health import report_options
    from teleport_sync.status.report import status_rows

    from .helpers import make_zip

    source = make_zip(tmp_path / "night.zip")
    with Journal(tmp_path / "journal.sqlite3") as journal:
        journal.register(str(source), identify(source), "bulk-images", "night.zip")
        [closed] = status_rows(journal, report_options(journal, bwlimit="0"))
        [open_] = status_rows(journal, report_options(journal, bwlimit="10M"))
    assert closed["phase"] == "queued" and "upload window is closed" in closed["reason"]
    assert open_["reason"] == "waiting for an upload slot"


def test_the_metrics_gauge_reads_the_limit_in_force() -> None:
    from teleport_sync.status.metrics import Metrics

    metrics = Metrics()
    gauge = "teleport_sync_bwlimit_bytes_per_second"
    assert metrics.registry.get_sample_value(gauge) == -1  # no limiter: no limit
    wall = [at(0, 7)]
    limiter = BandwidthLimiter(
        parse_bwlimit("Mon-Fri 08:00,0 19:00,3M"),
        clock=FakeClock(),
        now=lambda: wall[0],
        recheck_seconds=0.0,
    )
    metrics.watch_bwlimit(limiter)
    assert metrics.registry.get_sample_value(gauge) == 3 * MIB
    wall[0] = at(0, 9)
    assert metrics.registry.get_sample_value(gauge) == 0
