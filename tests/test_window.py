"""The rule for parts in flight (engine/window.py), on a fake clock: wider while throughput grows
(twice as wide while it grows in proportion), held at the path's own width (the link's rate over
one part's rate) once the link is full, or at once when each part already runs fast, halved at a
failure and grown back no wider than the path, never past its cap or below one. Each test drives it
with a simulated link: parts share the throughput the link gives at their number, and start as
slots free up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from teleport_sync.api import build_client
from teleport_sync.engine import Uploader
from teleport_sync.engine.parts import url_threads
from teleport_sync.engine.window import FlightWindow, start_width
from teleport_sync.journal import Journal

PART = 8 << 20


@contextmanager
def uploaders(tmp_path: Path) -> Iterator[tuple[Any, Journal]]:
    """A client (never called: only its base URL names the path) and a journal, for
    uploaders that remember a path's width as each new process on that journal would."""
    with (
        Journal(tmp_path / "journal.sqlite3") as journal,
        build_client(
            base_url="http://127.0.0.1:9", auth_url="http://127.0.0.1:9/t", client_id="c",
            client_secret="s",
        ) as client,
    ):  # fmt: skip
        yield client, journal


def simulate(window: FlightWindow, link: Callable[[int], float], parts: int) -> list[int]:
    """Send `parts` parts over `link` (bytes/s for n parts in flight): the widths it went by."""
    return timed(window, link, parts)[0]


def timed(
    window: FlightWindow,
    link: Callable[[int], float],
    parts: int,
    busy: Callable[[float], float] = lambda now: 1.0,
) -> tuple[list[int], float]:
    """As `simulate`, and the seconds the parts took; `busy(now)` scales the link's rate (a
    loaded CPU or a shared link for a while)."""
    now, started, widths = 0.0, 0, [window.limit]
    in_flight: list[list[float]] = []  # [bytes left, round]
    while started < parts or in_flight:
        while started < parts and len(in_flight) < window.limit:
            in_flight.append([PART, window.part_started(now)])
            started += 1
        share = link(len(in_flight)) * busy(now) / len(in_flight)
        step = min(left for left, _ in in_flight) / share
        now += step
        for flight in in_flight:
            flight[0] -= share * step
        for flight in [f for f in in_flight if f[0] <= 1]:
            in_flight.remove(flight)
            window.part_done(PART, now, int(flight[1]))
        if widths[-1] != window.limit:
            widths.append(window.limit)
    return widths, now


def long_path(per_connection: float, link: float) -> Callable[[int], float]:
    return lambda n: min(n * per_connection, link)


def test_a_long_path_widens_fast_and_holds_once_the_link_is_full() -> None:
    window = FlightWindow(start=4, cap=64)
    # 5 MB/s a connection (a 256 KiB window over a 50 ms round trip), a 100 MB/s link: 20
    # parts fill it.
    widths = simulate(window, long_path(5e6, 100e6), 400)
    assert widths[:4] == [4, 8, 16, 32]  # twice as wide while throughput keeps up
    # 32 was only 1.25x as fast as 16: the link is full, and 16 parts moved 5 MB/s each.
    assert widths[4:] == [21]  # 100 / 5 = 20 parts, and 8 % of headroom
    assert window.path_width == 21


def test_one_slow_round_does_not_set_the_width_a_second_round_at_it_decides() -> None:
    # 5 MB/s a connection, a 160 MB/s link: 32 parts fill it. The first round at 32 falls in
    # a busy moment (the machine or the link shared: 70 % of the rate) and brings only 1.4x
    # what 16 did. Judged on it alone, the link would be "full" at 24; a second round at 32
    # shows it is not, and the window goes on to find the link full at 32.
    busy = lambda now: 0.7 if 3.3 <= now < 5.0 else 1.0  # noqa: E731
    window = FlightWindow(start=8, cap=128)
    widths, _ = timed(window, long_path(5e6, 160e6), 600, busy)
    assert widths == [8, 16, 32, 64, 32]
    assert window.path_width == 32
    # A failure that cuts the second round short settles nothing (a round slowed by resets is
    # no measure): halved, and growth starts again.
    cut = FlightWindow(start=8, cap=128)
    now = 0.0
    for rate in (40e6, 80e6, 100e6):  # rounds at 8 and 16 in proportion; at 32 only 1.25x
        now = _round(cut, rate, now)
    assert cut.limit == 32 and cut.path_width is None  # doubted: a second round at 32
    cut.part_failed(cut.part_started(now))
    assert cut.path_width is None and cut.limit == 16


def _round(window: FlightWindow, rate: float, start: float) -> float:
    """One round at the window's width from `start`, its parts acknowledged at `rate`
    together; when it ended."""
    epoch, width = window.part_started(start), window.limit
    for k in range(1, width + 1):
        window.part_done(PART, start + k * PART / rate, epoch)
    return start + width * PART / rate


def test_a_doubling_that_still_brings_half_as_much_again_goes_on() -> None:
    # 125 MB/s: 32 parts bring 1.56x what 16 did (a relay or a loaded CPU slows connections
    # a little as they multiply, so less than 2x is no proof the link is full): 64 is tried,
    # brings nothing more, and 32 is held.
    window = FlightWindow(start=4, cap=64)
    assert simulate(window, long_path(5e6, 125e6), 400) == [4, 8, 16, 32, 64, 32]
    assert window.path_width == 32


def test_the_width_follows_the_path_not_a_fixed_number() -> None:
    # A 1 Gbit/s link with a 150 ms round trip: 256 KiB / 0.15 s = 1.75 MB/s a connection,
    # ~72 parts to fill 125 MB/s. The cap (a safety bound) is far above.
    window = FlightWindow(start=8, cap=256)
    widths = simulate(window, long_path(256 * 1024 / 0.15, 125e6), 1200)
    assert widths[:5] == [8, 16, 32, 64, 128]
    assert 72 <= window.limit <= 78  # the path's width, not the cap, not 32
    # Half the round trip: half the width.
    window = FlightWindow(start=8, cap=256)
    simulate(window, long_path(256 * 1024 / 0.075, 125e6), 1200)
    assert 36 <= window.limit <= 39


def test_a_very_long_path_reaches_the_cap_and_stays_there() -> None:
    window = FlightWindow(start=4, cap=32)
    simulate(window, long_path(1e6, 125e6), 400)
    assert window.limit == 32


def test_a_full_link_goes_back_to_where_it_started() -> None:
    window = FlightWindow(start=4, cap=32)
    # 60 MB/s however many parts share it: 15 MB/s a part, slow enough to be worth a probe.
    widths = simulate(window, lambda n: 60e6, 200)
    assert widths == [4, 8, 4]  # the probe twice as wide showed no gain


def test_parts_that_already_run_fast_are_not_probed_wider() -> None:
    # 250 MB/s a part (a LAN, or loopback with the CPU the limit): their round trips hold
    # nothing back, and a round at twice the width would only share the same CPU.
    window = FlightWindow(start=4, cap=32)
    assert simulate(window, lambda n: 1e9, 200) == [4]
    # After a failure growth may start again, and the same judgment holds it again.
    window.part_failed(window.part_started(0.0))
    assert simulate(window, lambda n: 1e9, 200) == [2]
    assert window.path_width == 2


def test_a_failure_halves_it_and_growth_starts_again() -> None:
    window = FlightWindow(start=4, cap=32)
    simulate(window, long_path(1e6, 125e6), 400)
    window.part_failed(window.part_started(0.0))
    assert window.limit == 16
    assert simulate(window, long_path(1e6, 125e6), 100) == [16, 32]  # back to the path's width
    window.part_failed(window.part_started(0.0))
    for _ in range(5):  # five failures in a row, each of a part started after the one before
        window.part_failed(window.part_started(0.0))
    assert window.limit == 1  # never below one
    simulate(window, long_path(1e6, 125e6), 400)
    assert window.limit == 32


def test_parts_in_flight_together_that_fail_together_narrow_it_once() -> None:
    window = FlightWindow(start=4, cap=32)
    simulate(window, long_path(1e6, 125e6), 400)
    assert window.limit == 32
    # Every connection reset at once: 32 parts of the same epoch fail.
    epochs = [window.part_started(10.0) for _ in range(32)]
    for epoch in epochs:
        window.part_failed(epoch)
    assert window.limit == 16
    # Their retries start after the narrowing: a failure among them narrows again.
    window.part_failed(window.part_started(11.0))
    assert window.limit == 8


def test_parts_started_before_a_failure_do_not_judge_the_width_after_it() -> None:
    window = FlightWindow(start=4, cap=32)
    old = window.part_started(0.0)
    window.part_failed(old)
    for _ in range(10):
        window.part_done(PART, 1.0, old)
    assert window.limit == 2


def test_slots_beyond_the_width_wait_and_a_stop_ends_the_wait() -> None:
    window = FlightWindow(start=2, cap=8)
    assert window.acquire() and window.acquire()
    stop = threading.Event()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(window.acquire(stop.is_set)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # the third waits: two are in flight
    window.release()
    waiter.join(5)
    assert got == [True]
    blocked = threading.Thread(target=lambda: got.append(window.acquire(stop.is_set)))
    blocked.start()
    stop.set()
    blocked.join(5)
    assert got == [True, False]


def test_growth_after_a_failure_stops_at_the_width_the_path_was_found_to_fill() -> None:
    window = FlightWindow(start=4, cap=256)
    simulate(window, long_path(5e6, 100e6), 400)
    assert window.limit == 21
    window.part_failed(window.part_started(0.0))
    assert window.limit == 10
    widths = simulate(window, long_path(5e6, 100e6), 400)
    assert widths == [10, 20, 21]  # doubling, but never past the path's width


def lossy(window: FlightWindow, parts_between_failures: int, failures: int) -> int:
    """A 100 Mbit/s link (12.5 MB/s whatever the width) where a part fails every so often:
    the widest the window went."""
    widest = window.limit
    for _ in range(failures):
        widest = max(widest, *simulate(window, lambda n: 12.5e6, parts_between_failures))
        window.part_failed(window.part_started(0.0))
    return widest


def test_a_slow_lossy_link_does_not_open_dozens_of_connections() -> None:
    # A part fails every 30th: the window probes twice as wide once, finds no gain, and every
    # failure after that narrows it and grows it back only to the width that filled the link.
    window = FlightWindow(start=8, cap=256)
    assert lossy(window, 30, failures=20) == 16  # never wider than the one probe
    # Each probe after a failure is cut short before its second round: nothing wider is
    # learned, and the window stays at the few parts the link holds.
    assert window.path_width is None or window.path_width <= 8
    assert window.limit <= 8


def test_a_lossy_link_failing_before_the_first_judgment_stays_narrow() -> None:
    # Failures come faster than a round ends: the window never learns the path, and never
    # grows past where it started.
    window = FlightWindow(start=8, cap=256)
    assert lossy(window, 3, failures=30) <= 8
    assert window.limit <= 4


def test_the_next_file_on_a_learned_path_starts_at_its_width_and_holds() -> None:
    first = FlightWindow(start=8, cap=256)
    path = long_path(256 * 1024 / 0.15, 125e6)  # 1 Gbit/s, 150 ms: ~72 parts fill it
    widths, first_seconds = timed(first, path, 1200)
    assert widths[:5] == [8, 16, 32, 64, 128]  # four doublings
    learned = first.path_width
    assert learned is not None and 72 <= learned <= 78
    second = FlightWindow(
        start=start_width(8, learned), cap=256, part_rate=first.learned_part_rate, found=learned
    )
    widths, second_seconds = timed(second, path, 1200)
    assert widths == [learned]  # no climb, no probe past a full link
    assert second.path_width == learned
    assert second_seconds < 1.03 * 1200 * PART / 125e6  # the link's own time, and a last wave
    assert second_seconds < first_seconds
    # Where each part of its first round moved as fast as when the link did not hold it back
    # (the link was upgraded since), there is room: twice as wide, then judged as any growth.
    faster = FlightWindow(start=learned, cap=256, part_rate=first.learned_part_rate, found=learned)
    widths = simulate(faster, long_path(256 * 1024 / 0.15, 500e6), 1200)
    assert widths[:2] == [learned, 2 * learned]
    assert faster.limit > 2 * learned - 1
    # The station's link dropped to 20 Mbit/s since: one round at the width found, then the
    # two parts its throughput needs at the remembered per-part rate.
    slower = FlightWindow(start=learned, cap=256, part_rate=first.learned_part_rate, found=learned)
    assert simulate(slower, long_path(256 * 1024 / 0.15, 2.5e6), 200) == [learned, 2]
    assert slower.path_width == 2
    # On a LAN now (each part runs free): it needs fewer, so the next file starts at half,
    # and so down to `concurrency` file by file, as it came up.
    lan = FlightWindow(start=learned, cap=256, part_rate=first.learned_part_rate, found=learned)
    assert simulate(lan, lambda n: 4e9, 200) == [learned]
    assert lan.path_width == learned // 2
    # A path that never needed more than `concurrency` (or nothing learned): `concurrency`.
    assert start_width(8, 8) == 8 and start_width(8, None) == 8


def test_a_file_over_before_its_window_found_the_path_teaches_what_the_path_holds(
    tmp_path: Path,
) -> None:
    # 1 GiB in 8 MiB parts at 1 Gbit/s and 150 ms: ~72 parts fill the path, and each part
    # takes 4.8 s, so the window doubles once per 4.8 s and the file is over at 64.
    path = long_path(256 * 1024 / 0.15, 125e6)
    first = FlightWindow(start=8, cap=128)
    widths, first_seconds = timed(first, path, 128)
    assert widths == [8, 16, 32, 64, 128]
    assert first.path_width is None  # never found the link full
    assert first.proven == 64  # 64 brought twice what 32 did: the path holds 64
    # The next file starts half as wide again, a probe past what it held, not at 8 again nor
    # at 64 for another part's time, and is sent in about half the time: 96 parts share the
    # link, then the last 32 go at one connection's pace (the link's own time is 8.6 s).
    second = FlightWindow(
        start=start_width(8, first.proven, at_least=True),
        cap=128,
        part_rate=first.learned_part_rate,
        held=first.proven,
    )
    widths, second_seconds = timed(second, path, 128)
    assert widths[0] == 96
    assert second_seconds < 1.35 * 128 * PART / 125e6
    assert second_seconds < 0.6 * first_seconds
    # 96 did not bring half as much again as 64 did (the link is full at ~72), and the file
    # ended before a second round at 96 could: it settles on that round, the path's width.
    second.conclude()
    assert second.path_width is not None and 72 <= second.path_width <= 78
    # Kept in the journal as "at least 64"; a file that finds the width replaces it, a
    # shorter file that shows less never lowers it.
    with uploaders(tmp_path) as (client, journal):
        uploader = Uploader(client, journal, concurrency=8, adaptive=True)
        uploader.ctx.learn_path_holds(64, first.learned_part_rate)
        again = Uploader(client, journal, concurrency=8, adaptive=True)
        assert again.ctx.start_width() == 96  # half as many again as it held: a probe
        assert again.ctx.path_part_rate == round(first.learned_part_rate or 0)
        again.ctx.learn_path_holds(16)
        assert Uploader(client, journal, concurrency=8, adaptive=True).ctx.start_width() == 96
        again.ctx.learn_path_width(76)
        assert Uploader(client, journal, concurrency=8, adaptive=True).ctx.start_width() == 76
        again.ctx.learn_path_holds(8)  # no more than `concurrency`: nothing to remember
        assert Uploader(client, journal, concurrency=8, adaptive=True).ctx.start_width() == 76


def test_a_file_started_twice_as_wide_as_the_path_held_judges_its_first_round_against_it() -> None:
    # The path held 64 (each part ~1.75 MB/s); the next file, 4 GiB, starts at 128. Its first
    # round is that round's probe: the link is full at ~72, so 128 brings 1.1x what 64 did, not
    # 2x, and (after a second round, one round being a noisy measure) it holds at the path's
    # width, never probing 256.
    path = long_path(256 * 1024 / 0.15, 125e6)
    part_rate = 256 * 1024 / 0.15
    window = FlightWindow(start=128, cap=256, part_rate=part_rate, held=64)
    widths = simulate(window, path, 512)
    assert widths[:2] == [128, window.path_width]
    assert window.path_width is not None and 72 <= window.path_width <= 78
    # A path that carries twice as much now (2 Gbit/s): 128 brought twice what 64 did, so
    # twice as wide again, and the widest round that paid is 128.
    wider = FlightWindow(start=128, cap=512, part_rate=part_rate, held=64)
    widths = simulate(wider, long_path(part_rate, 250e6), 1024)
    assert widths[:2] == [128, 256]
    assert wider.proven >= 128
    # Without a remembered round (a fact from before part rates were kept) it is a first
    # probe, as any file's first round is: twice as wide.
    unseeded = FlightWindow(start=128, cap=256, held=64)
    assert simulate(unseeded, path, 512)[:2] == [128, 256]


def test_a_remembered_width_on_a_path_turned_slow_narrows_after_one_round() -> None:
    # Learned on 1 Gbit/s at 150 ms (the path holds 64, each part moving ~1.75 MB/s), then the
    # station's link drops to 20 Mbit/s: the next file starts at 64, but its first round moves
    # 39 kB/s a part, under half of what it did: it needs 2 parts, not 128.
    fast = long_path(256 * 1024 / 0.15, 125e6)
    first = FlightWindow(start=8, cap=128)
    simulate(first, fast, 128)
    assert first.proven == 64 and first.learned_part_rate is not None
    assert 1.7e6 < first.learned_part_rate < 1.8e6
    slow = long_path(256 * 1024 / 0.15, 2.5e6)
    second = FlightWindow(start=64, cap=128, part_rate=first.learned_part_rate)
    assert simulate(second, slow, 128) == [64, 2]  # never doubled to 128 on a full link
    assert second.path_width == 2  # learned: the file after it starts at `concurrency`
    # Started at the probe past a width it held (a "64+" fact), the same: one round at 128.
    probe = FlightWindow(start=128, cap=256, part_rate=first.learned_part_rate, held=64)
    assert simulate(probe, slow, 256) == [128, 2]
    # The same start on the fast path is not mistaken for a slow one: it widens.
    third = FlightWindow(start=64, cap=128, part_rate=first.learned_part_rate)
    assert simulate(third, fast, 128) == [64, 128]


def test_parts_that_run_free_teach_the_width_they_held(tmp_path: Path) -> None:
    # A LAN after a long path: the remembered width is replaced by the one that sufficed.
    window = FlightWindow(start=38, cap=256)
    assert simulate(window, lambda n: 4e9, 200) == [38]
    assert window.path_width == 38  # the next file starts at 19, the one after at 9, then 8


def test_the_width_a_path_filled_is_remembered_in_the_journal(tmp_path: Path) -> None:
    with uploaders(tmp_path) as (client, journal):
        uploader = Uploader(client, journal, concurrency=8, adaptive=True)
        assert uploader.ctx.start_width() == 8  # nothing learned yet
        uploader.ctx.learn_path_width(76)
        # Another process (the next `upload`, or the daemon restarted) on the same journal.
        again = Uploader(client, journal, concurrency=8, adaptive=True)
        assert again.ctx.start_width() == 76
        fixed = Uploader(client, journal, concurrency=8, adaptive=False)
        assert fixed.ctx.start_width() == 8  # adaptive off: exactly `concurrency`


def test_resets_do_not_ratchet_the_width_down() -> None:
    # A long path 21 parts wide, then reset after reset while the link is slowed to half
    # (others share it, the resets cost time): the rounds after each failure are no measure
    # of the path, so the window doubles back to its width instead of judging them (judged,
    # 20 would show no gain over 10, and every reset would halve the width for good).
    window = FlightWindow(start=8, cap=256)
    simulate(window, long_path(5e6, 100e6), 400)
    assert window.limit == 21
    for _ in range(10):
        window.part_failed(window.part_started(0.0))
        assert window.limit == 10
        assert simulate(window, long_path(5e6, 50e6), 60) == [10, 20, 21]
    assert window.path_width == 21


def test_a_wide_start_asks_for_its_urls_in_two_round_trips() -> None:
    # One URL per part and a part waits for its URL: eight threads at 150 ms a request took
    # 1.2 s to start a window of 64. Half the starting width asks them in two round trips.
    assert url_threads(workers=128, started=128) == 64
    assert url_threads(workers=128, started=64) == 32
    assert url_threads(workers=128, started=8) == 8  # a narrow start keeps eight
    assert url_threads(workers=4, started=64) == 4  # never more than the part threads
