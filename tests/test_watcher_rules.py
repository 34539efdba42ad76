"""The settle rule (pure, fake time) and the ignore rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleport_sync.config import WatchSettings
from teleport_sync.watch.candidates import ignore_reason
from teleport_sync.watch.watcher import Pending, settle_step


def test_a_new_file_is_not_settled_at_once() -> None:
    state, settled = settle_step(None, 10, 1, now=100.0, settle_seconds=5)
    assert state == Pending(10, 1, 100.0) and not settled


def test_unchanged_for_the_window_is_settled() -> None:
    state, _ = settle_step(None, 10, 1, now=100.0, settle_seconds=5)
    _, settled = settle_step(state, 10, 1, now=104.9, settle_seconds=5)
    assert not settled
    _, settled = settle_step(state, 10, 1, now=105.0, settle_seconds=5)
    assert settled


def test_any_change_restarts_the_window() -> None:
    state, _ = settle_step(None, 10, 1, now=100.0, settle_seconds=5)
    state, settled = settle_step(state, 20, 2, now=104.0, settle_seconds=5)
    assert not settled and state.stable_since == 104.0
    state, settled = settle_step(state, 20, 3, now=108.0, settle_seconds=5)  # mtime only
    assert not settled and state.stable_since == 108.0
    _, settled = settle_step(state, 20, 3, now=113.0, settle_seconds=5)
    assert settled


def test_zero_settle_time_settles_immediately() -> None:
    _, settled = settle_step(None, 10, 1, now=0.0, settle_seconds=0)
    assert settled


ROOT = Path("/inbox")


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("scan.zip", None),
        ("Deep/Nested/CLIP.MP4", None),
        ("notes.txt", "not an included type"),
        (".hidden.zip", "hidden"),
        (".cache/scan.zip", "hidden"),
        ("copy.mp4.part", "temporary"),
        ("x.zip.tmp", "temporary"),
        ("movie.mp4.crdownload", "temporary"),
        ("~$scan.zip", "temporary"),
        (".~lock.zip", "hidden"),
        ("drafts/skip.zip", "excluded"),
    ],
)
def test_ignore_rules(relative: str, reason: str | None) -> None:
    settings = WatchSettings(paths=[ROOT], exclude=["drafts/*"])
    assert ignore_reason(ROOT / relative, ROOT, settings) == reason


def test_falls_back_to_polling_when_inotify_is_unavailable(tmp_path: Path) -> None:
    import errno
    import threading

    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    from teleport_sync.watch.watcher import Watcher

    class NoWatchesLeft(Observer):  # type: ignore[misc,valid-type]
        """Like an Observer on a system whose inotify watch limit is used up."""

        def schedule(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    settled: list[Path] = []
    arrived = threading.Event()

    def on_settled(path: Path, root: Path) -> None:
        settled.append(path)
        arrived.set()

    watcher = Watcher(
        WatchSettings(paths=[tmp_path], settle_seconds=0.1),
        on_settled,
        observer_factory=NoWatchesLeft,  # type: ignore[arg-type]
        fallback_factory=lambda: PollingObserver(timeout=0.1),
    )
    watcher.start()
    try:
        assert isinstance(watcher._observer, PollingObserver)
        (tmp_path / "late.zip").write_bytes(b"PK\x03\x04 data")
        assert arrived.wait(10), "the polling fallback never saw the new file"
    finally:
        watcher.stop()
    assert settled == [tmp_path / "late.zip"]
