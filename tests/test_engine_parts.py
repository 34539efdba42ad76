"""The engine's part sender and its coordinator, branch by branch, over `httpx.MockTransport`.

Same rig as tests/test_engine_steps.py: the real HTTP client against `FakeTeleport`, a real
SQLite journal, a fake clock (every backoff and Retry-After is a recorded sleep, none real).
One part at a time, so the order of requests is fixed and each assertion is exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from teleport_sync.engine import (
    FileChanged,
    NoProgress,
    Paused,
    StartOver,
    Stopped,
    Uploader,
    UploadFailed,
    plan_parts,
)
from teleport_sync.inputs import InputProblem
from teleport_sync.journal import FileRecord, Journal

from .conftest import FakeClock
from .fake_teleport import (
    FakeTeleport,
    Real,
    fake_uploader,
    lost_answer,
    md5_etag,
    register,
    reply,
    s3_error,
)
from .helpers import make_mp4

CAPTURES = "/api/v1/captures"
WRONG_ETAG = f'"{"0" * 32}"'  # MD5-shaped, and the MD5 of none of these parts


@pytest.fixture
def fake() -> Iterator[FakeTeleport]:
    fake = FakeTeleport(chunk_size=40)
    yield fake
    assert fake.unused() == {}, "scripted answers no request took"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as j:
        yield j


@pytest.fixture
def retries() -> list[str]:
    return []


@pytest.fixture
def uploader(
    fake: FakeTeleport, clock: FakeClock, journal: Journal, retries: list[str]
) -> Iterator[Uploader]:
    with fake_uploader(fake, clock, journal) as up:
        up.on_retry = retries.append
        yield up


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """100 bytes: three parts of the fake's 40-byte chunks (40, 40, 20)."""
    # No track in its moov: the engine only moves bytes (intake checks formats), and a video
    # track alone would not fit in 100 bytes.
    return make_mp4(tmp_path / "walk.mp4", 100, handler=None)


def created(fake: FakeTeleport, journal: Journal, up: Uploader, path: Path) -> FileRecord:
    """A row with its capture (c1) created and no part sent; the fake's log emptied."""
    record = up.creator.ensure(register(journal, path))
    fake.seen.clear()
    return record


def send_all(up: Uploader, record: FileRecord, path: Path) -> None:
    up.parts.send_all(path, record, plan_parts(100, 40, 3), 100)


def corrupted(request: httpx.Request, real: Real) -> httpx.Response:
    """Storage keeps the bytes and answers with the ETag of other bytes."""
    real()
    return httpx.Response(200, headers={"ETag": WRONG_ETAG})


def expected_parts(path: Path) -> dict[int, tuple[str, str]]:
    data = path.read_bytes()
    chunks = {n: data[(n - 1) * 40 : n * 40] for n in (1, 2, 3)}
    return {n: (hashlib.md5(c).hexdigest(), md5_etag(c)) for n, c in chunks.items()}


def journaled(journal: Journal, record: FileRecord) -> dict[int, tuple[str, str]]:
    return {n: (p.md5, p.etag) for n, p in journal.parts(record.id).items()}


def url_requests(fake: FakeTeleport, part: int) -> int:
    return fake.requests("url").count(f"POST {CAPTURES}/c1/create-upload-url/{part}")


# -- parts -----------------------------------------------------------------------------------


def test_a_part_whose_etag_is_not_its_md5_is_sent_again_with_a_fresh_url(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, retries: list[str]
) -> None:
    record = created(fake, journal, uploader, video)
    fake.script("put", corrupted)

    send_all(uploader, record, video)

    first, second = fake.put_urls(1)
    assert first != second  # every attempt has a URL of its own
    assert [len(fake.put_urls(n)) for n in (2, 3)] == [1, 1]
    assert url_requests(fake, 1) == 2
    assert journaled(journal, record) == expected_parts(video)
    assert retries == ["etag-mismatch"]


def test_a_part_that_keeps_arriving_corrupted_fails_the_upload(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, retries: list[str]
) -> None:
    record = created(fake, journal, uploader, video)
    fake.script("put", corrupted, corrupted, corrupted)

    with pytest.raises(UploadFailed, match=r"part 1/3 of walk\.mp4 arrived corrupted 3 times"):
        send_all(uploader, record, video)

    assert len(set(fake.put_urls(1))) == 3  # three attempts, three URLs
    assert fake.put_urls() == fake.put_urls(1)  # and no other part went out after it failed
    assert journal.parts(record.id) == {}
    assert retries == ["etag-mismatch"] * 3


def test_an_expired_url_is_replaced_by_a_fresh_one_at_once(
    fake: FakeTeleport,
    uploader: Uploader,
    journal: Journal,
    video: Path,
    clock: FakeClock,
    retries: list[str],
) -> None:
    record = created(fake, journal, uploader, video)
    fake.script("put", s3_error(403, "AccessDenied", "Request has expired"))

    send_all(uploader, record, video)

    first, second = fake.put_urls(1)
    assert first != second
    log = fake.requests()
    # The second URL was asked for after the first one was refused, not prefetched before.
    refused = log.index("PUT /c1/1")
    assert f"POST {CAPTURES}/c1/create-upload-url/1" in log[refused:]
    assert journaled(journal, record) == expected_parts(video)
    assert retries == ["expired-url"]
    assert clock.sleeps == []  # one expired URL is no reason to wait


def test_fresh_urls_that_arrive_expired_slow_the_api_down(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, clock: FakeClock
) -> None:
    record = created(fake, journal, uploader, video)
    expired = s3_error(403, "AccessDenied", "Request has expired")
    fake.script("put", expired, expired)

    send_all(uploader, record, video)

    assert len(fake.put_urls(1)) == 3
    [pause] = clock.sleeps  # before the third URL request: skew or an API hiccup
    assert 0 <= pause <= 0.5  # the part policy's first backoff (base 0.5 s)
    assert journaled(journal, record) == expected_parts(video)


def test_storage_503_with_retry_after_holds_the_next_put_that_long(
    fake: FakeTeleport,
    uploader: Uploader,
    journal: Journal,
    video: Path,
    clock: FakeClock,
    retries: list[str],
) -> None:
    record = created(fake, journal, uploader, video)
    fake.script(
        "put", s3_error(503, "SlowDown", "Please reduce your request rate.", **{"Retry-After": "7"})
    )

    send_all(uploader, record, video)

    assert clock.sleeps == [7.0]  # on the fake clock: the storage pacer held the retry
    assert uploader.ctx.client.storage_pacer.sleep > 0  # and remembers the slowdown
    assert uploader.ctx.client.pacer.sleep == 0  # the API did nothing wrong
    assert len(fake.put_urls(1)) == 2
    assert journaled(journal, record) == expected_parts(video)
    assert retries == ["part"]


def test_parts_already_journaled_are_not_sent_again(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = created(fake, journal, uploader, video)
    data, parts = video.read_bytes(), expected_parts(video)
    for n in (1, 3):  # acknowledged before a crash
        fake.captures["c1"].parts[n] = data[(n - 1) * 40 : n * 40]
        journal.record_part(record.id, n, len(fake.captures["c1"].parts[n]), *parts[n])

    result = uploader.upload(video)

    assert (result.eid, result.parts_sent, result.already_uploaded) == ("c1", 1, False)
    assert fake.put_urls(1) == fake.put_urls(3) == []
    assert len(fake.put_urls(2)) == 1
    assert fake.requests("url") == [f"POST {CAPTURES}/c1/create-upload-url/2"]
    [completion] = [s for s in fake.seen if s.route == "uploaded"]
    assert completion.body["parts"] == [{"number": n, "etag": parts[n][1]} for n in (1, 2, 3)]
    assert journal.get(record.id).upload_state == "uploaded"


def test_storage_whose_etags_are_not_md5s_is_learned_and_not_checked(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = created(fake, journal, uploader, video)

    def kms_etag(request: httpx.Request, real: Real) -> httpx.Response:
        real()  # SSE-KMS buckets answer with an ETag that is no MD5 of the bytes
        return httpx.Response(200, headers={"ETag": f'"kms-{request.url.path[-1]}"'})

    fake.script("put", kms_etag, kms_etag, kms_etag)

    send_all(uploader, record, video)

    assert journaled(journal, record) == {n: ("", f'"kms-{n}"') for n in (1, 2, 3)}
    assert uploader.etags_are_md5 is False
    assert journal.fact(f"storage-etags-are-md5 {uploader.client.base_url}") == "no"
    assert len(fake.put_urls()) == 3  # nothing resent for want of a check


def test_a_put_answered_without_an_etag_is_sent_again(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, retries: list[str]
) -> None:
    record = created(fake, journal, uploader, video)

    def no_etag(request: httpx.Request, real: Real) -> httpx.Response:
        real()
        return httpx.Response(200)

    fake.script("put", no_etag)

    send_all(uploader, record, video)

    assert len(set(fake.put_urls(1))) == 2
    assert journaled(journal, record) == expected_parts(video)
    assert retries == ["part"]


def test_a_refused_url_request_holds_the_api_not_storage(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, clock: FakeClock
) -> None:
    record = created(fake, journal, uploader, video)
    fake.script("url", reply(503, {"detail": "busy"}, **{"Retry-After": "3"}))

    send_all(uploader, record, video)

    assert clock.sleeps == [3.0]  # before the next URL request, on the fake clock
    assert uploader.client.pacer.sleep > 0 and uploader.client.storage_pacer.sleep == 0
    assert url_requests(fake, 1) == 2 and len(fake.put_urls(1)) == 1  # no PUT without a URL
    assert journaled(journal, record) == expected_parts(video)


# -- the coordinator -------------------------------------------------------------------------


def test_a_failed_part_stops_the_others_and_the_failure_is_journaled(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    fake.script("put", s3_error(400, "InvalidArgument", "Part number must be an integer"))

    with pytest.raises(UploadFailed, match="InvalidArgument") as caught:
        uploader.upload(video)

    assert type(caught.value) is UploadFailed
    assert fake.put_urls() == fake.put_urls(1) and len(fake.put_urls(1)) == 1
    assert fake.requests("uploaded") == []
    row = journal.all_files()[0]
    assert (row.upload_state, row.attempts, row.eid) == ("failed", 1, "c1")
    assert "InvalidArgument: Part number must be an integer" in str(row.error)
    assert journal.parts(row.id) == {}


def test_a_capture_deleted_during_the_upload_starts_the_file_over(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    def deleted_in_the_web_ui(request: httpx.Request, real: Real) -> httpx.Response:
        fake.captures.pop("c1")
        return real()

    fake.script("put", deleted_in_the_web_ui)

    with pytest.raises(StartOver, match="gone from the account"):
        uploader.upload(video)

    assert fake.put_urls() == fake.put_urls(1) and len(fake.put_urls(1)) == 1
    row = journal.all_files()[0]
    assert (row.eid, row.upload_state, row.attempts) == (None, "failed", 1)
    assert [kind for kind, _ in journal.events(row.id)][-2:] == ["restarted", "failed"]


def test_a_pause_between_parts_is_not_a_failure(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    # The gate says no once a part has gone out, as when the upload window closes.
    uploader.ctx.gate = lambda path: "outside the upload window" if fake.put_urls() else None

    with pytest.raises(Paused, match="outside the upload window"):
        uploader.upload(video)

    assert [len(fake.put_urls(n)) for n in (1, 2, 3)] == [1, 0, 0]
    row = journal.all_files()[0]
    assert (row.upload_state, row.error, row.attempts) == ("uploading", None, 0)
    assert sorted(journal.parts(row.id)) == [1]  # kept, to resume from
    assert "failed" not in [kind for kind, _ in journal.events(row.id)]


def test_a_stop_is_not_a_failure_and_the_next_run_resumes(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    class StopAfterFirstPart:
        def started(self, *args: object) -> None: ...
        def advanced(self, *args: object) -> None: ...

        def part_done(self, path: Path, number: int) -> None:
            uploader.stop.set()  # SIGTERM

    uploader.progress = StopAfterFirstPart()

    with pytest.raises(Stopped):
        uploader.upload(video)

    row = journal.all_files()[0]
    assert (row.upload_state, row.error, row.attempts) == ("uploading", None, 0)
    assert sorted(journal.parts(row.id)) == [1]

    uploader.stop.clear()
    uploader.progress = NoProgress()
    result = uploader.upload(video)

    assert result.parts_sent == 2
    assert [len(fake.put_urls(n)) for n in (1, 2, 3)] == [1, 1, 1]
    assert fake.requests("create") == [f"POST {CAPTURES}"]


def test_a_file_that_grows_during_its_upload_loses_its_capture_and_starts_over(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    def grow_the_file(request: httpx.Request, real: Real) -> httpx.Response:
        answer = real()
        with video.open("ab") as handle:  # the camera was still writing after all
            handle.write(b"moreover")
        return answer

    fake.script("put", lambda request, real: real(), lambda request, real: real(), grow_the_file)

    with pytest.raises(FileChanged, match="changed while it was being uploaded"):
        uploader.upload(video)

    assert fake.requests("delete", "uploaded") == [f"DELETE {CAPTURES}/c1"]
    assert fake.captures == {}
    row = journal.all_files()[0]
    assert (row.eid, row.upload_state, row.identity.size) == (None, "failed", 108)
    assert journal.parts(row.id) == {}


def test_a_late_duplicate_of_a_lost_create_is_swept_before_completion(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    def duplicate_lands(request: httpx.Request, real: Real) -> httpx.Response:
        fake.add(fake.captures["c1"].name)  # the lost create's retry, landing late
        return real()

    fake.script("create", lost_answer)
    fake.script("put", duplicate_lands)

    result = uploader.upload(video)

    assert result.eid == "c1"
    log = fake.requests()
    assert log.index(f"DELETE {CAPTURES}/c2") < log.index(f"POST {CAPTURES}/c1/uploaded")
    assert {eid: c.name for eid, c in fake.captures.items()} == {"c1": "walk.mp4"}
    assert ("deleted-duplicate", "c2") in journal.events(result.file_id)


def test_an_input_deleted_mid_upload_is_an_input_problem_and_a_failed_row(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    def delete_the_input(request: httpx.Request, real: Real) -> httpx.Response:
        video.unlink()  # while part 2 is being read and sent
        return real()

    fake.script("put", lambda request, real: real(), delete_the_input)

    with pytest.raises(InputProblem, match=r"cannot read part 2/3 of walk\.mp4: No such file"):
        uploader.upload(video)

    assert [len(fake.put_urls(n)) for n in (1, 2, 3)] == [1, 1, 0]
    row = journal.all_files()[0]
    assert (row.upload_state, row.attempts) == ("failed", 1)
    assert sorted(journal.parts(row.id)) == [1]  # the file may come back: kept


def test_forcing_a_new_upload_deletes_the_unfinished_capture(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    created(fake, journal, uploader, video)  # c1, no part sent yet

    result = uploader.upload(video, force=True)

    assert result.eid == "c2"
    assert fake.requests("create", "delete") == [f"DELETE {CAPTURES}/c1", f"POST {CAPTURES}"]
    assert list(fake.captures) == ["c2"]
    assert ("restarted", "forced; capture c1 deleted") in journal.events(result.file_id)


def test_an_uploaded_file_is_not_sent_again_but_its_rename_is_finished(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    fake.script("rename", reply(500), reply(500))
    first = uploader.upload(video)
    fake.seen.clear()

    again = uploader.upload(video)

    assert (again.eid, again.already_uploaded, again.parts_sent) == (first.eid, True, 0)
    assert fake.requests() == [f"PUT {CAPTURES}/c1"]  # only the rename left over
    assert fake.captures["c1"].name == "walk.mp4"
