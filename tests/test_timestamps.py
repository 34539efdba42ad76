"""One time format for the journal: text comparison in SQL must order times correctly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from teleport_sync.timestamps import parse_utc, seconds_since, utc_in, utc_now, utc_seconds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_journal_times_have_one_shape_and_sort_as_text() -> None:
    times = [utc_now(NOW + timedelta(microseconds=n)) for n in (0, 1, 999_999, 1_000_000)]
    times.append(utc_in(3600, NOW))
    assert times[0] == "2026-03-01T12:00:00.000000+00:00"  # microseconds even when zero
    assert times == sorted(times)
    assert len({len(t) for t in times}) == 1


def test_a_time_in_another_zone_is_written_in_utc() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert utc_now(paris) == utc_now(NOW)
    assert utc_seconds(paris) == "2026-03-01T12:00:00+00:00"


def test_seconds_since_reads_what_was_written() -> None:
    assert seconds_since(utc_in(-90, NOW), NOW) == 90
    assert seconds_since(utc_in(30, NOW), NOW) == -30
    assert parse_utc(utc_now(NOW)) == NOW
