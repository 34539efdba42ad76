"""What an upload's outcome does to the journal (`uploads.Uploads`), branch by branch.

The uploader is the real engine over `FakeTeleport` (httpx.MockTransport) and the journal a real
SQLite file; the worker's other collaborators are not reached on these branches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from teleport_sync.api.authstate import AuthState
from teleport_sync.daemon.queue import UploadQueue
from teleport_sync.daemon.workers import Uploads
from teleport_sync.engine import Uploader
from teleport_sync.inputs import InputProblem
from teleport_sync.journal import FileRecord, Journal, UploadState
from teleport_sync.status.metrics import Metrics
from teleport_sync.timestamps import parse_utc

from .conftest import FakeClock
from .fake_teleport import FakeTeleport, fake_uploader, register
from .helpers import make_mp4


class RecordedEvents:
    def __init__(self) -> None:
        self.rejected: list[str] = []

    def file_rejected(self, path: Path | str) -> None:
        self.rejected.append(str(path))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as j:
        yield j


@pytest.fixture
def fake() -> FakeTeleport:
    return FakeTeleport(chunk_size=40)


@pytest.fixture
def uploader(fake: FakeTeleport, journal: Journal) -> Iterator[Uploader]:
    with fake_uploader(fake, FakeClock(), journal) as up:
        yield up


def outcomes(
    journal: Journal,
    uploader: Uploader,
    events: RecordedEvents,
    queue: Any = None,
    keeper: Any = None,
) -> Uploads:
    unused: Any = None  # control, watcher and poller: not on these paths
    return Uploads(
        queue,
        journal,
        uploader,
        unused,
        keeper,
        watcher=unused,
        poller=unused,
        events=events,  # type: ignore[arg-type]
        metrics=Metrics(),
        stop=threading.Event(),
        next_attempt=lambda attempts: "2099-01-01T00:00:00.000000+00:00",
        report_status=lambda: None,
    )


def uploaded(journal: Journal, uploader: Uploader, path: Path) -> FileRecord:
    record = uploader.creator.ensure(register(journal, path))
    journal.mark_uploaded(record.id)
    return journal.get(record.id)


def test_an_uploaded_file_replaced_by_an_unusable_one_is_refused_and_keeps_its_capture(
    tmp_path: Path, fake: FakeTeleport, journal: Journal, uploader: Uploader
) -> None:
    video = make_mp4(tmp_path / "walk.mp4", 100, handler=None)
    record = uploaded(journal, uploader, video)
    events = RecordedEvents()
    video.write_bytes(b"")  # replaced after it was queued, before the worker got to it
    problem = InputProblem(f"{video}: the file is empty (0 bytes); nothing to upload")

    outcomes(journal, uploader, events)._input_problem(record, video, problem)

    after = journal.get(record.id)
    assert (after.upload_state, after.error) == (UploadState.REJECTED, str(problem))
    assert events.rejected == [str(video)]
    # The finished capture is the user's model: kept, and not queued for deletion.
    assert "c1" in fake.captures and journal.discarded_captures() == []


@pytest.mark.parametrize("finished", [True, False])
def test_a_deleted_file_says_whether_its_capture_was_deleted(
    tmp_path: Path, fake: FakeTeleport, journal: Journal, uploader: Uploader, finished: bool
) -> None:
    video = make_mp4(tmp_path / "walk.mp4", 100, handler=None)
    if finished:
        record = uploaded(journal, uploader, video)
    else:
        record = uploader.creator.ensure(register(journal, video))
    video.unlink()

    outcomes(journal, uploader, RecordedEvents())._input_problem(
        record, video, InputProblem(f"{video}: no such file")
    )

    after = journal.get(record.id)
    assert after.upload_state == UploadState.REJECTED
    assert ("its capture was deleted" in (after.error or "")) is not finished
    assert ("c1" in fake.captures) is finished
    assert journal.discarded_captures() == []


def test_a_failed_file_held_back_by_the_auth_backoff_shows_its_next_try(
    tmp_path: Path, journal: Journal, uploader: Uploader
) -> None:
    video = make_mp4(tmp_path / "walk.mp4", 100, handler=None)
    record = register(journal, video)
    journal.mark_failed(record.id, "authentication failed", None)  # as "retry now" leaves it
    clock = FakeClock()
    keeper = SimpleNamespace(auth=AuthState(base_seconds=30.0, clock=clock))
    keeper.auth.failed("authentication failed at the token endpoint")
    metrics = Metrics()
    queue = UploadQueue(journal, metrics)
    queue.enqueue(record.id)
    queue.stop_workers(1)
    before = datetime.now(UTC)

    outcomes(journal, uploader, RecordedEvents(), queue, keeper).worker()

    finished = datetime.now(UTC)
    after = journal.get(record.id)
    assert after.upload_state == UploadState.FAILED
    assert after.next_attempt_at is not None
    # The backoff's 30 s (on the fake clock), counted from when the worker looked.
    due = parse_utc(after.next_attempt_at)
    assert before + timedelta(seconds=30) <= due <= finished + timedelta(seconds=30)
    assert journal.parts(record.id) == {}  # nothing was sent while authentication fails
