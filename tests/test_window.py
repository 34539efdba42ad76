"""The rule for parts in flight (engine/window.py), on a fake clock: wider while throughput grows
(twice as wide while it grows in proportion), held once the link is full or when each part
already runs fast, halved at a failure, never past its cap or below one. Each test drives it
with a simulated link: parts share the throughput the link gives at their number, and start as
slots free up."""

from __future__ import annotations

import threading
from collections.abc import Callable

from teleport_sync.engine.window import FlightWindow

PART = 8 << 20


def simulate(window: FlightWindow, link: Callable[[int], float], parts: int) -> list[int]:
    """Send `parts` parts over `link` (bytes/s for n parts in flight): the widths it went by."""
    now, started, widths = 0.0, 0, [window.limit]
    in_flight: list[list[float]] = []  # [bytes left, round]
    while started < parts or in_flight:
        while started < parts and len(in_flight) < window.limit:
            in_flight.append([PART, window.part_started(now)])
            started += 1
        share = link(len(in_flight)) / len(in_flight)
        step = min(left for left, _ in in_flight) / share
        now += step
        for flight in in_flight:
            flight[0] -= share * step
        for flight in [f for f in in_flight if f[0] <= 1]:
            in_flight.remove(flight)
            window.part_done(PART, now, int(flight[1]))
        if widths[-1] != window.limit:
            widths.append(window.limit)
    return widths


def long_path(per_connection: float, link: float) -> Callable[[int], float]:
    return lambda n: min(n * per_connection, link)


def test_a_long_path_widens_fast_and_holds_once_the_link_is_full() -> None:
    window = FlightWindow(start=4, cap=64)
    # 5 MB/s a connection (a 256 KiB window over a 50 ms round trip), a 125 MB/s link.
    widths = simulate(window, long_path(5e6, 125e6), 400)
    assert widths[:4] == [4, 8, 16, 32]  # twice as wide while throughput keeps up
    assert window.limit == 32  # 33 was no faster: back to 32, held


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


def test_a_failure_halves_it_and_growth_starts_again() -> None:
    window = FlightWindow(start=4, cap=32)
    simulate(window, long_path(1e6, 125e6), 400)
    window.part_failed(window.part_started(0.0))
    assert window.limit == 16
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
