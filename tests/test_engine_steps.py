"""The engine's create and complete steps, branch by branch, over `httpx.MockTransport`.

The real `api.TeleportClient` talks to `FakeTeleport` (tests/fake_teleport.py), which records
every request; the journal is a real SQLite file and the clock a fake one, so nothing sleeps and
nothing leaves the process. tests/test_engine.py proves the same engine against the emulator
over loopback; these pin each branch: the requests that go out, the rows written, the exception
raised. The part sender and the coordinator are in tests/test_engine_parts.py.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import get_type_hints

import httpx
import pytest

from teleport_sync import api
from teleport_sync.engine import StartOver, Uploader, UploadFailed, ports, uploading_name
from teleport_sync.engine.context import EngineContext
from teleport_sync.inputs import identify
from teleport_sync.journal import FileRecord, Journal

from .conftest import FakeClock
from .fake_teleport import (
    FakeTeleport,
    Real,
    fake_client,
    fake_uploader,
    lost_answer,
    md5_etag,
    register,
    reply,
)
from .helpers import make_mp4

TOKEN = "0123456789abcdef"
CAPTURES = "/api/v1/captures"


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
def uploader(fake: FakeTeleport, clock: FakeClock, journal: Journal) -> Iterator[Uploader]:
    with fake_uploader(fake, clock, journal) as up:
        yield up


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """100 bytes: three parts of the fake's 40-byte chunks (40, 40, 20)."""
    # No track in its moov: the engine only moves bytes (intake checks formats), and a video
    # track alone would not fit in 100 bytes.
    return make_mp4(tmp_path / "walk.mp4", 100, handler=None)


def sent_all_parts(fake: FakeTeleport, journal: Journal, up: Uploader, path: Path) -> FileRecord:
    """A row whose capture has every part, journaled and stored; the fake's log emptied."""
    record = up.creator.ensure(register(journal, path))
    assert record.eid
    data = path.read_bytes()
    for n in (1, 2, 3):
        chunk = data[(n - 1) * 40 : n * 40]
        fake.captures[record.eid].parts[n] = chunk
        journal.record_part(
            record.id, n, len(chunk), hashlib.md5(chunk).hexdigest(), md5_etag(chunk)
        )
    fake.seen.clear()
    return journal.get(record.id)


# -- the protocol ----------------------------------------------------------------------------


def test_the_http_client_is_what_the_engine_asks_for(fake: FakeTeleport, clock: FakeClock) -> None:
    with fake_client(fake, clock) as client:
        assert isinstance(client, ports.TeleportClient)
        assert client.base_url == str(client.api.base_url)
    # Each call the engine makes exists on the HTTP client with the same parameters (extra
    # ones only with defaults), so the engine's calls work against it.
    checked = []
    for name, member in vars(ports.TeleportClient).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        checked.append(name)
        wanted = inspect.signature(member).parameters
        got = inspect.signature(getattr(api.TeleportClient, name)).parameters
        for param in wanted.values():
            assert param.name in got and got[param.name].kind == param.kind, (name, param)
        extra = [p for p in got.values() if p.name not in wanted]
        assert all(p.default is not inspect.Parameter.empty for p in extra), name
    assert sorted(checked) == [
        "complete_upload",
        "create_capture",
        "create_upload_url",
        "delete_capture",
        "find_capture",
        "iter_captures",
        "put_part",
        "rename_capture",
        "search_captures",
    ]
    # And the engine is typed against the protocol, not the HTTP client.
    assert get_type_hints(EngineContext)["client"] is ports.TeleportClient
    assert get_type_hints(Uploader.__init__)["client"] is ports.TeleportClient


# -- create ----------------------------------------------------------------------------------


def test_the_token_is_journaled_before_the_post_and_named_in_the_capture(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video)
    journaled_at_post: list[str | None] = []

    def look_at_the_journal(request: httpx.Request, real: Real) -> httpx.Response:
        journaled_at_post.append(journal.get(record.id).intent_nonce)
        return real()

    fake.script("create", look_at_the_journal)
    created = uploader.creator.ensure(record)

    [token] = journaled_at_post
    assert token is not None and len(token) == 16
    assert fake.requests() == [f"POST {CAPTURES}"]
    assert fake.seen[0].body == {
        "name": f"walk.mp4 [tsync:{token}]",
        "bytesize": 100,
        "input_data_format": "video",
    }
    assert fake.captures["c1"].name == uploading_name("walk.mp4", token)
    assert (created.eid, created.chunk_size, created.num_parts) == ("c1", 40, 3)
    assert (created.intent_nonce, created.upload_state) == (token, "uploading")


def test_a_create_whose_answer_is_lost_is_adopted_not_made_twice(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, clock: FakeClock
) -> None:
    record = register(journal, video)
    fake.script("create", lost_answer)

    adopted = uploader.creator.ensure(record)

    assert list(fake.captures) == ["c1"]
    assert fake.requests() == [
        f"POST {CAPTURES}",
        f"GET {CAPTURES}",
        f"GET {CAPTURES}",  # the first page was full-length: one more, empty
        f"POST {CAPTURES}/c1/create-upload-url/1",  # the part size, which the listing lacks
    ]
    assert (adopted.eid, adopted.chunk_size, adopted.num_parts) == ("c1", 40, 3)
    assert fake.captures["c1"].name == uploading_name("walk.mp4", str(adopted.intent_nonce))
    assert ("adopted", "capture c1 from the orphan window") in journal.events(record.id)
    assert len(clock.sleeps) == 1  # one backoff, on the fake clock
    # A late duplicate of the lost create may still appear: swept again before completion.
    assert uploader.creator.is_ambiguous(record.id)


def test_adoption_keeps_the_oldest_capture_with_the_token_and_deletes_the_other(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video, TOKEN)
    ours = uploading_name("walk.mp4", TOKEN)
    fake.add(ours, created="2026-11-28T04:00:00Z")
    fake.add(uploading_name("walk.mp4", "fedcba9876543210"))  # another station's
    fake.add("walk.mp4")  # a person's upload of a file of the same name
    fake.add(ours, created="2026-11-28T04:00:05Z")  # a retried create that landed twice

    adopted = uploader.creator.ensure(record)

    assert adopted.eid == "c1"
    assert fake.requests() == [
        f"GET {CAPTURES}",
        f"GET {CAPTURES}",
        f"DELETE {CAPTURES}/c4",
        f"POST {CAPTURES}/c1/create-upload-url/1",
    ]
    assert {eid: c.name for eid, c in fake.captures.items()} == {
        "c1": ours,
        "c2": uploading_name("walk.mp4", "fedcba9876543210"),
        "c3": "walk.mp4",
    }
    assert ("deleted-duplicate", "c4") in journal.events(record.id)


def test_a_capture_with_the_same_name_but_not_the_token_is_never_adopted(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video, TOKEN)
    fake.add("walk.mp4")
    fake.add(uploading_name("walk.mp4", "fedcba9876543210"))

    created = uploader.creator.ensure(record)

    assert created.eid == "c3"
    assert fake.requests() == [
        f"GET {CAPTURES}",  # adoption: nothing carries the token
        f"GET {CAPTURES}",
        f"POST {CAPTURES}",  # so a new capture, with the same token
        f"GET {CAPTURES}",  # the listing may have missed one: swept once more
        f"GET {CAPTURES}",
    ]
    assert fake.seen[2].body["name"] == uploading_name("walk.mp4", TOKEN)
    assert [c.name for c in fake.captures.values()] == [
        "walk.mp4",
        uploading_name("walk.mp4", "fedcba9876543210"),
        uploading_name("walk.mp4", TOKEN),
    ]


def test_a_capture_with_the_token_that_shows_up_late_is_swept(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video, TOKEN)
    fake.add(uploading_name("walk.mp4", TOKEN))  # the crashed run's, not listed yet
    fake.script("list", reply(200, []))

    created = uploader.creator.ensure(record)

    assert created.eid == "c2"
    assert fake.requests() == [
        f"GET {CAPTURES}",
        f"POST {CAPTURES}",
        f"GET {CAPTURES}",
        f"GET {CAPTURES}",
        f"DELETE {CAPTURES}/c1",
    ]
    assert list(fake.captures) == ["c2"]
    assert ("deleted-duplicate", "c1") in journal.events(record.id)


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            422,
            {"detail": [{"loc": ["body", "bytesize"], "msg": "too large"}]},
            "bytesize: too large",
        ),
        (403, {"detail": "capture limit of your plan reached"}, "capture limit of your plan"),
    ],
)
def test_a_refused_create_fails_the_upload_without_retrying(
    fake: FakeTeleport,
    uploader: Uploader,
    journal: Journal,
    video: Path,
    clock: FakeClock,
    status: int,
    body: object,
    said: str,
) -> None:
    record = register(journal, video)
    fake.script("create", reply(status, body))

    with pytest.raises(UploadFailed, match=said) as caught:
        uploader.creator.ensure(record)

    assert type(caught.value) is UploadFailed
    assert isinstance(caught.value.__cause__, api.RequestRejected)
    assert fake.requests() == [f"POST {CAPTURES}"]
    assert fake.captures == {} and clock.sleeps == []
    # The intent stays: whatever the server did with the request carries its token.
    assert journal.get(record.id).intent_nonce is not None


def test_a_create_the_server_keeps_refusing_is_retried_with_a_look_between(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path, clock: FakeClock
) -> None:
    record = register(journal, video)
    busy = reply(503, {"detail": "busy"}, **{"Retry-After": "2"})
    fake.script("create", busy, busy, busy)

    with pytest.raises(UploadFailed, match="HTTP 503"):
        uploader.creator.ensure(record)

    assert fake.requests() == [
        f"POST {CAPTURES}",
        f"GET {CAPTURES}",  # did it land after all?
        f"POST {CAPTURES}",
        f"GET {CAPTURES}",
        f"POST {CAPTURES}",  # the policy's third and last attempt
    ]
    assert clock.sleeps == [2.0, 2.0]  # the server's Retry-After, on the fake clock


def test_an_adopted_capture_that_vanished_starts_the_file_over(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video, TOKEN)
    fake.add(uploading_name("walk.mp4", TOKEN))
    fake.script("url", reply(404, {"detail": "capture c1 not found"}))  # deleted meanwhile

    with pytest.raises(StartOver, match="capture c1 vanished"):
        uploader.creator.ensure(record)

    assert fake.requests("create") == []
    assert journal.get(record.id).eid is None


def test_no_capture_is_created_while_the_listing_cannot_be_read(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = register(journal, video, TOKEN)
    fake.add(uploading_name("walk.mp4", TOKEN))  # there, but the listing fails
    fake.script("list", reply(500), reply(500))

    with pytest.raises(UploadFailed, match="cannot look for this file's capture"):
        uploader.creator.ensure(record)

    assert fake.requests() == [f"GET {CAPTURES}"] * 2  # the client's two attempts; no create
    assert list(fake.captures) == ["c1"]


# -- complete --------------------------------------------------------------------------------


def test_a_completion_whose_answer_is_lost_is_confirmed_by_the_captures_state(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)

    def done_then_503(request: httpx.Request, real: Real) -> httpx.Response:
        real()
        fake.captures["c1"].state = "PROCESSING"
        return httpx.Response(503)

    fake.script("uploaded", done_then_503, reply(503))

    assert uploader.completer.complete(video, record, 3) == ("PROCESSING", None)
    assert fake.requests() == [
        f"POST {CAPTURES}/c1/uploaded",
        f"POST {CAPTURES}/c1/uploaded",  # the client's own retry
        f"GET {CAPTURES}",  # then the capture itself is asked
    ]
    assert fake.seen[0].body == {
        "eid": "c1",
        "parts": [{"number": n, "etag": journal.parts(record.id)[n].etag} for n in (1, 2, 3)],
    }


def test_a_failed_completion_of_a_capture_still_awaiting_upload_is_a_failure(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)
    fake.script("uploaded", reply(503), reply(503))

    with pytest.raises(UploadFailed, match="HTTP 503") as caught:
        uploader.completer.complete(video, record, 3)

    assert type(caught.value) is UploadFailed
    assert fake.requests("list") == [f"GET {CAPTURES}"]
    assert sorted(journal.parts(record.id)) == [1, 2, 3]  # kept: the next attempt completes


def test_a_capture_gone_at_completion_starts_the_file_over(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)
    del fake.captures["c1"]  # deleted in the web UI

    with pytest.raises(StartOver, match="gone from the account"):
        uploader.completer.complete(video, record, 3)

    assert fake.requests() == [
        f"POST {CAPTURES}/c1/uploaded",
        f"GET {CAPTURES}",
        f"GET {CAPTURES}",  # twice before calling it gone
    ]
    row = journal.get(record.id)
    assert (row.eid, row.upload_state, row.intent_nonce) == (None, "pending", None)
    assert journal.parts(record.id) == {}
    kind, why = journal.events(record.id)[-1]
    assert kind == "restarted" and "capture c1 is gone" in why


def test_parts_storage_rejects_are_forgotten_so_the_next_attempt_sends_them_all(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)
    fake.captures["c1"].parts[2] = b"not what was sent"

    with pytest.raises(UploadFailed, match="InvalidPart"):
        uploader.completer.complete(video, record, 3)

    assert journal.parts(record.id) == {}
    assert journal.events(record.id)[-1][0] == "parts-forgotten"
    assert journal.get(record.id).eid == "c1"  # the capture itself is kept


def test_a_failed_rename_is_left_for_later_and_then_done(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    fake.script("rename", reply(500), reply(500))

    result = uploader.upload(video)

    row = journal.get(result.file_id)
    token = str(row.intent_nonce)
    assert (row.upload_state, row.renamed_at) == ("uploaded", None)
    assert fake.captures["c1"].name == uploading_name("walk.mp4", token)
    assert [r.id for r in journal.pending_renames()] == [row.id]

    assert uploader.finish_renames() == 0  # none left pending

    assert journal.get(row.id).renamed_at is not None
    assert fake.captures["c1"].name == "walk.mp4"
    assert fake.requests("rename") == [f"PUT {CAPTURES}/c1"] * 3
    assert [s.body for s in fake.seen if s.route == "rename"] == [{"name": "walk.mp4"}] * 3
    assert journal.pending_renames() == []


def test_a_capture_gone_before_its_rename_counts_as_renamed(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    fake.script("rename", reply(404, {"detail": "not found"}))

    result = uploader.upload(video)

    assert journal.get(result.file_id).renamed_at is not None
    assert fake.requests("rename") == [f"PUT {CAPTURES}/c1"]


@pytest.mark.parametrize(("status", "raised"), [(404, StartOver), (503, UploadFailed)])
def test_a_failed_completion_when_the_listing_fails_too_trusts_only_a_404(
    fake: FakeTeleport,
    uploader: Uploader,
    journal: Journal,
    video: Path,
    status: int,
    raised: type[UploadFailed],
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)
    tries = 1 if status == 404 else 2  # the client retries a 503 itself, not a 404
    fake.script("uploaded", *[reply(status)] * tries)
    fake.script("list", reply(500), reply(500))

    with pytest.raises(raised) as caught:
        uploader.completer.complete(video, record, 3)

    assert type(caught.value) is raised
    assert fake.requests() == [f"POST {CAPTURES}/c1/uploaded"] * tries + [f"GET {CAPTURES}"] * 2
    assert (journal.get(record.id).eid is None) == (raised is StartOver)


def test_a_completion_with_a_part_missing_from_the_journal_asks_nothing(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)

    with pytest.raises(UploadFailed, match=r"parts \[4\] have no ETag"):
        uploader.completer.complete(video, record, 4)

    assert fake.requests() == []


# -- captures cut loose from their rows --------------------------------------------------------


def test_a_refused_file_leaves_no_unfinished_capture_on_the_account(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    # An upload failed midway (the row keeps its capture for the next attempt); then the file
    # was rewritten into something the intake refuses, which restarts the row.
    record = uploader.creator.ensure(register(journal, video))
    journal.mark_failed(record.id, "storage went away", None)
    video.write_bytes(b"not an mp4 any more")
    refused = journal.reject(
        str(video), identify(video), record.input_data_format, record.name, "not an MP4"
    )
    assert (refused.upload_state, refused.eid) == ("rejected", None)
    assert journal.discarded_captures() == [("c1", "changed")]

    # The first round's delete meets server errors (the client's own two tries): it stays
    # queued, with why.
    fake.script("delete", reply(503, {"detail": "busy"}), reply(503, {"detail": "busy"}))
    assert uploader.finish_discards() == 1
    assert "c1" in fake.captures
    fake.seen.clear()
    assert uploader.finish_discards() == 0
    assert fake.requests("delete") == [f"DELETE {CAPTURES}/c1"]
    assert "c1" not in fake.captures
    assert journal.discarded_captures() == []
    assert uploader.finish_discards() == 0  # nothing left: no request


def test_a_restarted_uploaded_file_keeps_its_finished_capture(
    fake: FakeTeleport, uploader: Uploader, journal: Journal, video: Path
) -> None:
    record = sent_all_parts(fake, journal, uploader, video)
    journal.mark_uploaded(record.id)
    video.write_bytes(video.read_bytes()[::-1])  # a new version of the input
    journal.restart(record.id, identify(video), record.input_data_format, record.name, "changed")
    assert journal.discarded_captures() == []
    assert uploader.finish_discards() == 0
    assert "c1" in fake.captures and fake.requests("delete") == []
