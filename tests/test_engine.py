"""The upload engine against the emulator over loopback: bytes, part counts, recovery."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from teleport_sync.api import TeleportClient, build_client, default_transport
from teleport_sync.api.transport import LazyTLSTransport
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.emulator.stats import Call
from teleport_sync.engine import (
    FileChanged,
    StartOver,
    Stopped,
    Uploader,
    UploadFailed,
    uploading_name,
)
from teleport_sync.inputs import InputProblem
from teleport_sync.journal import Journal
from teleport_sync.retry import RetryPolicy
from teleport_sync.status.report import status_rows

from .conftest import FakeClock
from .helpers import MIB, make_mp4, make_zip


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=99, chunk_size=5 * MIB, processing_delay_seconds=60)


@pytest.fixture(params=["stdlib+sendfile", "httpcore"])
def client(emulator: EmulatorServer, request: pytest.FixtureRequest) -> Iterator[TeleportClient]:
    """Every engine test runs over both transports: the standard library's (plain http, parts
    by sendfile) and httpcore's (what https always uses, parts streamed in blocks)."""
    with build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
        policy=RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05),
        transport=default_transport if request.param == "stdlib+sendfile" else LazyTLSTransport,
    ) as c:
        yield c


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as j:
        yield j


@pytest.fixture
def uploader(client: TeleportClient, journal: Journal) -> Uploader:
    return Uploader(
        client,
        journal,
        concurrency=4,
        clock=FakeClock(),
        part_policy=RetryPolicy(max_attempts=6, base_delay=0.01),
    )


def on_call(emulator: EmulatorServer, listener: Callable[[Call], None]) -> None:
    emulator.stats.listeners.append(listener)


def fault_until_seen(emulator: EmulatorServer, knob: str, status: int) -> None:
    """Turn a PUT fault on until the first PUT answered with `status`, then off again."""
    setattr(emulator.config, knob, 1.0)

    def heal(call: Call) -> None:
        if call.kind == "put" and call.status == status:
            setattr(emulator.config, knob, 0.0)

    on_call(emulator, heal)


def interrupt_after_parts(uploader: Uploader, parts: int) -> None:
    """Make the next upload stop, as on SIGTERM, once `parts` parts are acknowledged."""
    stop = threading.Event()

    class CountParts:
        done = 0

        def started(self, *args: object) -> None: ...
        def advanced(self, *args: object) -> None: ...

        def part_done(self, path: Path, number: int) -> None:
            self.done += 1
            if self.done >= parts:
                stop.set()

    uploader.concurrency = 1
    uploader.progress = CountParts()
    uploader.stop = stop


def captures_named(emulator: EmulatorServer, name: str) -> list[str]:
    return [c.eid for c in emulator.backend.captures.values() if c.name == name]


def test_zip_and_mp4_arrive_byte_for_byte_each_part_once(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    zip_path = make_zip(tmp_path / "scan.zip", images=5, pad=11 * MIB)
    mp4_path = make_mp4(tmp_path / "walk.mp4", 7 * MIB + 123)
    results = [uploader.upload(zip_path), uploader.upload(mp4_path)]

    for result, path, fmt, parts in (
        (results[0], zip_path, "bulk-images", 3),
        (results[1], mp4_path, "video", 2),
    ):
        assert emulator.object_bytes(result.eid) == path.read_bytes()
        assert emulator.backend.get(result.eid).input_data_format == fmt
        assert emulator.stats.successful_puts(result.eid) == {n: 1 for n in range(1, parts + 1)}
        assert emulator.stats.count("api", "POST", f"/{result.eid}/uploaded") == 1
        journaled = journal.parts(result.file_id)
        assert sorted(journaled) == list(range(1, parts + 1))
        data = path.read_bytes()
        for n, part in journaled.items():
            chunk = data[(n - 1) * 5 * MIB : n * 5 * MIB]
            assert part.md5 == hashlib.md5(chunk).hexdigest() and part.size == len(chunk)
        [row] = [r for r in status_rows(journal) if r["path"] == str(path)]
        assert row["upload_state"] == "uploaded" and row["eid"] == result.eid
        assert row["capture_state"] == "UPLOADED"
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == 2
    assert uploader.etags_are_md5 is True  # so every part above was hashed and checked


def test_parts_really_overlap(emulator: EmulatorServer, uploader: Uploader, tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "big.mp4", 40 * MIB)
    eid = uploader.upload(path).eid
    puts = [c for c in emulator.stats.snapshot() if c.kind == "put" and c.eid == eid]
    assert len(puts) == 8
    assert most_at_once(puts) >= 2


def most_at_once(puts: list[Call]) -> int:
    """The largest number of these PUTs that storage was receiving at the same moment."""
    return max(
        sum(1 for o in puts if o.started <= p.started < o.finished)  # type: ignore[operator]
        for p in puts
    )


def test_parts_in_flight_are_bounded_across_files(
    emulator: EmulatorServer, client: TeleportClient, journal: Journal, tmp_path: Path
) -> None:
    """Two files at once, four parts each allowed, three in flight at most for both together."""
    emulator.config.put_delay_seconds = 0.2  # long enough PUTs that they would overlap
    bounded = Uploader(client, journal, concurrency=4, max_parts_in_flight=3, clock=FakeClock())
    files = [make_mp4(tmp_path / f"clip{i}.mp4", 30 * MIB) for i in (1, 2)]
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(bounded.upload(p).eid)) for p in files
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    puts = [c for c in emulator.stats.snapshot() if c.kind == "put" and c.status == 200]
    assert {c.eid for c in puts} == set(results) and len(puts) == 12
    assert 2 <= most_at_once(puts) <= 3
    # Each capture holds one file's bytes, whichever file got which capture.
    stored = {emulator.object_bytes(eid) for eid in results}
    assert stored == {p.read_bytes() for p in files}


def test_expired_url_gets_a_new_one(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path
) -> None:
    fault_until_seen(emulator, "expired_url_rate", 403)
    path = make_zip(tmp_path / "a.zip", pad=6 * MIB)
    eid = uploader.upload(path).eid
    assert emulator.object_bytes(eid) == path.read_bytes()
    statuses = [c.status for c in emulator.stats.snapshot() if c.kind == "put"]
    assert 403 in statuses


@pytest.mark.parametrize("knob", ["put_5xx_rate", "put_reset_rate"])
def test_a_failed_put_is_sent_again(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path, knob: str
) -> None:
    failed = 0 if knob == "put_reset_rate" else 500  # a reset is recorded as status 0
    fault_until_seen(emulator, knob, failed)
    retried: list[str] = []
    uploader.on_retry = retried.append
    uploader.concurrency = 1
    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)
    eid = uploader.upload(path).eid
    puts = [c for c in emulator.stats.snapshot() if c.kind == "put"]
    assert puts[0].status == failed and puts[0].part == 1
    assert retried == ["part"]
    assert emulator.stats.successful_puts(eid) == {1: 1, 2: 1, 3: 1}
    assert emulator.object_bytes(eid) == path.read_bytes()


def test_a_401_mid_upload_refreshes_the_token(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path
) -> None:
    fired = threading.Event()

    def revoke(call: Call) -> None:
        if call.kind == "put" and call.status == 200 and not fired.is_set():
            fired.set()
            emulator.backend.tokens.clear()

    on_call(emulator, revoke)
    path = make_mp4(tmp_path / "v.mp4", 16 * MIB)
    eid = uploader.upload(path).eid
    assert emulator.object_bytes(eid) == path.read_bytes()
    assert any(c.status == 401 for c in emulator.stats.snapshot() if c.kind == "api")
    assert len(emulator.stats.tokens_issued) == 2


def test_etag_mismatch_resends_only_that_part(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path
) -> None:
    fault_until_seen(emulator, "wrong_etag_rate", 200)
    uploader.concurrency = 1  # so "the first part" is a well-defined one
    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)
    eid = uploader.upload(path).eid
    assert emulator.stats.successful_puts(eid) == {1: 2, 2: 1, 3: 1}
    assert emulator.object_bytes(eid) == path.read_bytes()


def test_lost_completion_answer_is_reconciled(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    emulator.config.lose_uploaded_response_rate = 1.0
    path = make_mp4(tmp_path / "v.mp4", 6 * MIB)
    result = uploader.upload(path)
    assert result.capture_state == "UPLOADED"
    assert journal.get(result.file_id).upload_state == "uploaded"
    assert emulator.object_bytes(result.eid) == path.read_bytes()


def test_already_uploaded_is_not_sent_again_unless_forced(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 6 * MIB)
    first = uploader.upload(path)
    puts = len([c for c in emulator.stats.snapshot() if c.kind == "put"])
    again = uploader.upload(path)
    assert again.already_uploaded and again.eid == first.eid
    assert len([c for c in emulator.stats.snapshot() if c.kind == "put"]) == puts
    forced = uploader.upload(path, force=True)
    assert not forced.already_uploaded and forced.eid != first.eid
    assert emulator.object_bytes(forced.eid) == path.read_bytes()


def test_resume_sends_only_unacknowledged_parts(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 22 * MIB)  # 5 parts
    interrupt_after_parts(uploader, 2)
    with pytest.raises(Stopped):
        uploader.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and record.upload_state == "uploading"
    assert sorted(journal.parts(record.id)) == [1, 2]

    uploader.stop = threading.Event()
    uploader.concurrency = 4
    result = uploader.upload(path)
    assert result.parts_sent == 3
    assert emulator.stats.successful_puts(result.eid) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert emulator.object_bytes(result.eid) == path.read_bytes()
    assert captures_named(emulator, "v.mp4") == [result.eid]


def test_orphan_window_adopts_the_capture_made_before_a_crash(
    emulator: EmulatorServer,
    uploader: Uploader,
    journal: Journal,
    client: TeleportClient,
    tmp_path: Path,
) -> None:
    from teleport_sync.inputs import identify
    from teleport_sync.models import NewCaptureInput

    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)
    identity = identify(path)
    record = journal.register(str(path), identity, "video", "v.mp4")
    token = journal.mark_create_intent(record.id, "0123456789abcdef")
    # The crash: the server made the capture (twice, say a retried POST), the journal never knew.
    made = [
        client.create_capture(
            NewCaptureInput(
                name=uploading_name("v.mp4", token),
                bytesize=identity.size,
                input_data_format="video",
            )
        ).eid
        for _ in range(2)
    ]
    creates_before = emulator.stats.count("api", "POST", "/api/v1/captures")
    result = uploader.upload(path)
    assert result.eid == made[0]
    assert emulator.stats.count("api", "POST", "/api/v1/captures") == creates_before
    assert captures_named(emulator, "v.mp4") == [made[0]]
    assert emulator.object_bytes(result.eid) == path.read_bytes()
    assert ("adopted", f"capture {made[0]} from the orphan window") in journal.events(record.id)


def test_file_changed_since_journaled_abandons_the_old_capture(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)
    interrupt_after_parts(uploader, 1)
    with pytest.raises(Stopped):
        uploader.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and record.eid
    old_eid = record.eid

    make_mp4(path, 11 * MIB)  # rewritten in place
    uploader.stop = threading.Event()
    result = uploader.upload(path)
    assert result.eid != old_eid
    assert old_eid not in emulator.backend.captures
    assert emulator.object_bytes(result.eid) == path.read_bytes()
    kinds = [kind for kind, _ in journal.events(record.id)]
    assert "restarted" in kinds


def test_a_file_changed_since_journaled_into_a_partial_one_is_not_uploaded(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    # A failed or interrupted row is retried straight from the journal, not through the
    # daemon's intake: a file cut short meanwhile must not become a capture of a partial zip.
    path = make_zip(tmp_path / "scan.zip", pad=12 * MIB)
    interrupt_after_parts(uploader, 1)
    with pytest.raises(Stopped):
        uploader.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and record.eid
    old_eid = record.eid

    with path.open("r+b") as handle:  # cut short, as a copy started again would leave it
        handle.truncate(7 * MIB)
    uploader.stop = threading.Event()
    with pytest.raises(FileChanged, match="end-of-central-directory"):
        uploader.upload(path)
    assert list(emulator.backend.captures) == [old_eid]  # nothing new created or sent
    after = journal.by_path(str(path))
    assert after is not None and after.eid == old_eid and after.upload_state != "uploaded"


def test_file_changed_during_upload_is_detected(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)

    class Rewrite:
        def started(self, *args: object) -> None: ...
        def advanced(self, *args: object) -> None: ...
        def part_done(self, p: Path, number: int) -> None:
            if number == 1:
                with path.open("r+b") as f:
                    f.seek(100)
                    f.write(b"changed!")

    uploader.concurrency = 1
    uploader.progress = Rewrite()
    with pytest.raises(FileChanged, match="changed while it was being uploaded"):
        uploader.upload(path)
    assert captures_named(emulator, "v.mp4") == []
    record = journal.by_path(str(path))
    assert record is not None and record.eid is None and journal.parts(record.id) == {}


def _empty_zip(base: Path) -> Path:
    path = base.with_suffix(".zip")
    path.write_bytes(b"")
    return path


def _text_file(base: Path) -> Path:
    path = base.with_suffix(".txt")
    path.write_text("notes")
    return path


def _missing_mp4(base: Path) -> Path:
    return base.with_suffix(".mp4")


@pytest.mark.parametrize(
    ("make", "message"),
    [(_empty_zip, "empty"), (_text_file, "not a capture"), (_missing_mp4, "no such file")],
)
def test_bad_inputs_fail_with_one_clear_line(
    uploader: Uploader, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path / "bad")
    with pytest.raises(InputProblem, match=message) as info:
        uploader.upload(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_storage_without_md5_etags_is_learned_and_not_hashed_again(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    """ETags that are not MD5s can never check a hash: the engine learns it from the first
    acknowledged part, stops hashing, remembers it across runs, and the bytes still land."""
    emulator.config.opaque_etags = True
    first = make_mp4(tmp_path / "a.mp4", 23 * MIB)
    result = uploader.upload(first)
    assert emulator.object_bytes(result.eid) == first.read_bytes()
    assert uploader.etags_are_md5 is False
    parts = journal.parts(result.file_id)
    assert len(parts) == 5 and all(p.etag.strip('"').startswith("opaque-") for p in parts.values())
    assert journal.fact(f"storage-etags-are-md5 {uploader.client.api.base_url}") == "no"

    # A new run (a new Uploader on the same journal) starts knowing it: no part is hashed.
    second = make_mp4(tmp_path / "b.mp4", 12 * MIB)
    fresh = Uploader(uploader.client, journal, concurrency=2)
    assert fresh.etags_are_md5 is False
    again = fresh.upload(second)
    assert emulator.object_bytes(again.eid) == second.read_bytes()
    assert [p.md5 for p in journal.parts(again.file_id).values()] == ["", "", ""]


def test_orphan_search_survives_a_capture_created_while_paging(
    emulator: EmulatorServer,
    uploader: Uploader,
    journal: Journal,
    client: TeleportClient,
    tmp_path: Path,
) -> None:
    """Newest-first paging by offset: a capture created between two pages shifts the list, so
    one entry comes twice. The adopted capture must not also be deleted as its own duplicate."""
    from teleport_sync.inputs import identify
    from teleport_sync.models import NewCaptureInput

    emulator.config.list_page_cap = 2
    path = make_mp4(tmp_path / "v.mp4", 7 * MIB)
    identity = identify(path)
    record = journal.register(str(path), identity, "video", "v.mp4")
    token = journal.mark_create_intent(record.id, "00112233aabbccdd")
    oldest, newer = (
        client.create_capture(
            NewCaptureInput(
                name=uploading_name("v.mp4", token),
                bytesize=identity.size,
                input_data_format="video",
            )
        ).eid
        for _ in range(2)
    )
    inserted: list[str] = []

    def another_station_creates(call: Call) -> None:
        if call.method == "GET" and call.path == "/api/v1/captures" and not inserted:
            inserted.append(emulator.backend.create("elsewhere.zip", 99, "bulk-images").eid)

    on_call(emulator, another_station_creates)
    result = uploader.upload(path)
    assert result.eid == oldest
    assert oldest in emulator.backend.captures and newer not in emulator.backend.captures
    assert inserted[0] in emulator.backend.captures
    assert emulator.object_bytes(oldest) == path.read_bytes()
    assert emulator.backend.get(oldest).name == "v.mp4"  # renamed once complete
    assert journal.get(record.id).renamed_at is not None


def test_a_capture_deleted_before_completion_starts_the_file_over(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 12 * MIB)  # 3 parts
    deleted: list[str] = []

    def delete_after_last_part(call: Call) -> None:
        done = call.kind == "put" and call.eid and emulator.stats.successful_puts(call.eid)
        if done and sum(done.values()) == 3 and not deleted:
            deleted.append(str(call.eid))
            emulator.backend.delete(str(call.eid))  # as the web UI's delete would

    on_call(emulator, delete_after_last_part)
    with pytest.raises(StartOver, match="gone from the account"):
        uploader.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and record.eid is None and journal.parts(record.id) == {}
    assert record.upload_state == "failed" and "starts over" in str(record.error)
    assert any("gone from the account" in m for k, m in journal.events(record.id))

    again = uploader.upload(path)
    assert again.eid != deleted[0]
    assert emulator.object_bytes(again.eid) == path.read_bytes()
    assert journal.get(record.id).error is None


def test_a_part_rewritten_in_place_between_attempts_is_hashed_anew(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    """The file is rewritten in the middle (size and mtime restored, so its identity holds)
    while part 2's first PUT fails: the next attempt must hash what it sends, not report the
    new bytes as corrupted attempt after attempt."""
    journal.set_fact(f"storage-etags-are-md5 {uploader.client.api.base_url}", "yes")
    fresh = Uploader(uploader.client, journal, concurrency=1, clock=FakeClock())
    assert fresh.etags_are_md5 is True  # so part 2's MD5 is computed beside its first PUT
    path = make_mp4(tmp_path / "v.mp4", 15 * MIB)
    before = os.stat(path)
    rewritten: list[int] = []

    def rewrite_during_the_failed_put(call: Call) -> None:
        if call.kind == "put" and call.part == 1 and call.status == 200:
            emulator.config.put_5xx_rate = 1.0  # part 2's first PUT fails
        if call.kind == "put" and call.status == 500 and not rewritten:
            emulator.config.put_5xx_rate = 0.0
            time.sleep(0.3)  # the hash of the failed attempt has long finished
            with path.open("r+b") as f:
                f.seek(7 * MIB)
                f.write(os.urandom(4096))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            rewritten.append(call.part or 0)

    on_call(emulator, rewrite_during_the_failed_put)
    result = fresh.upload(path)
    assert rewritten == [2]
    assert emulator.object_bytes(result.eid) == path.read_bytes()
    assert sum(emulator.stats.successful_puts(result.eid).values()) == 3


def test_a_part_rewritten_after_its_hash_was_asked_ahead_is_sent_again_and_lands(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    """Parts' first hashes are asked for ahead of their PUTs: part 3 is hashed while part 2 is
    still being sent, then rewritten in place (identity kept) before its own PUT. Its ETag then
    disagrees with the early hash; the part is sent again and hashed anew, and the capture
    holds the file's bytes as they are now."""
    journal.set_fact(f"storage-etags-are-md5 {uploader.client.api.base_url}", "yes")
    retried: list[str] = []
    fresh = Uploader(uploader.client, journal, concurrency=1, clock=FakeClock())
    fresh.on_retry = retried.append
    path = make_mp4(tmp_path / "v.mp4", 15 * MIB)
    before = os.stat(path)
    rewritten: list[bool] = []

    def rewrite_part_three_after_part_two(call: Call) -> None:
        if call.kind == "put" and call.part == 2 and call.status == 200 and not rewritten:
            time.sleep(0.3)  # part 3's early hash has long finished
            with path.open("r+b") as f:
                f.seek(12 * MIB)
                f.write(os.urandom(4096))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            rewritten.append(True)

    on_call(emulator, rewrite_part_three_after_part_two)
    result = fresh.upload(path)
    assert rewritten == [True]
    assert emulator.object_bytes(result.eid) == path.read_bytes()
    assert retried == ["etag-mismatch"]
    assert emulator.stats.successful_puts(result.eid) == {1: 1, 2: 1, 3: 2}


def test_a_failed_rename_is_journaled_and_retried_until_done(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    """The capture keeps its token in its name until the rename to its final name lands."""

    def api_down_after_completion(call: Call) -> None:
        if call.method == "POST" and call.path.endswith("/uploaded"):
            emulator.config.api_5xx_rate = 1.0

    on_call(emulator, api_down_after_completion)
    path = make_mp4(tmp_path / "v.mp4", 6 * MIB)
    result = uploader.upload(path)  # the upload itself succeeded
    record = journal.get(result.file_id)
    assert record.upload_state == "uploaded" and record.renamed_at is None
    assert emulator.backend.get(result.eid).name == f"v.mp4 [tsync:{record.intent_nonce}]"
    assert [r.id for r in journal.pending_renames()] == [record.id]

    emulator.config.api_5xx_rate = 0.0
    assert uploader.finish_renames() == 0
    assert emulator.backend.get(result.eid).name == "v.mp4"
    assert journal.pending_renames() == []
    assert ("renamed", "v.mp4") in journal.events(record.id)


def test_a_hard_link_to_a_journaled_file_is_not_a_second_capture(
    emulator: EmulatorServer, uploader: Uploader, tmp_path: Path
) -> None:
    path = make_mp4(tmp_path / "v.mp4", 6 * MIB)
    first = uploader.upload(path)
    os.link(path, tmp_path / "same.mp4")
    with pytest.raises(InputProblem, match="the same file as"):
        uploader.upload(tmp_path / "same.mp4")
    assert list(emulator.backend.captures) == [first.eid]


def test_a_failure_and_its_next_attempt_are_one_journal_write(
    emulator: EmulatorServer, client: TeleportClient, journal: Journal, tmp_path: Path
) -> None:
    emulator.config.api_5xx_rate = 1.0  # every create fails, retries included
    when = "2030-01-01T00:00:00+00:00"
    asked: list[int] = []

    def schedule(attempts: int) -> str:
        asked.append(attempts)
        return when

    failing = Uploader(client, journal, clock=FakeClock(), schedule_retry=schedule)
    path = make_mp4(tmp_path / "down.mp4", 6 * MIB)
    with pytest.raises(UploadFailed):
        failing.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and asked == [1]
    assert (record.upload_state, record.attempts, record.next_attempt_at) == ("failed", 1, when)
    assert [kind for kind, _ in journal.events(record.id)].count("failed") == 1


def test_a_stop_is_not_a_failure(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    uploader.stop.set()
    path = make_mp4(tmp_path / "later.mp4", 6 * MIB)
    with pytest.raises(Stopped) as raised:
        uploader.upload(path)
    assert not isinstance(raised.value, UploadFailed)
    record = journal.by_path(str(path))
    assert record is None or (record.upload_state != "failed" and record.attempts == 0)


def test_a_permanent_503_costs_one_url_request_per_part_attempt(
    emulator: EmulatorServer, client: TeleportClient, journal: Journal, tmp_path: Path
) -> None:
    """No nested retries: the part attempt is the retry unit, so a part's URL requests under a
    permanent 503 are bounded by the part's attempts (6), not attempts × the client's (36)."""
    emulator.config.retry_after_seconds = 0

    def api_refuses_after_create(call: Call) -> None:
        if call.method == "POST" and call.path == "/api/v1/captures" and call.status < 300:
            emulator.config.api_503_retry_after_rate = 1.0

    on_call(emulator, api_refuses_after_create)
    policy = RetryPolicy(max_attempts=6, base_delay=0.01)
    uploader = Uploader(client, journal, concurrency=1, clock=FakeClock(), part_policy=policy)
    path = make_mp4(tmp_path / "v.mp4", 6 * MIB)
    with pytest.raises(UploadFailed):
        uploader.upload(path)
    asked = [
        c.path
        for c in emulator.stats.snapshot()
        if c.kind == "api" and "create-upload-url" in c.path
    ]
    per_part = {p: asked.count(p) for p in asked}
    assert per_part and max(per_part.values()) <= policy.max_attempts


def test_a_remux_made_again_at_another_size_starts_the_upload_over(
    emulator: EmulatorServer, uploader: Uploader, journal: Journal, tmp_path: Path
) -> None:
    """A .mov is sent as its remux (`Sources`). If the work file is lost mid-upload and made
    again at another size (another PyAV), the parts already sent are of other bytes: the
    upload starts over with a new capture, and the old one is deleted."""
    movie = make_mp4(tmp_path / "clip.mov", 4 * MIB)  # the input; its bytes never go
    remuxes = [
        make_mp4(tmp_path / "first.mp4", 12 * MIB),
        make_mp4(tmp_path / "again.mp4", 7 * MIB),
    ]

    class WorkFolder:
        made = 0

        def source_for(self, record: object) -> Path:
            return remuxes[min(self.made, 1)]

        def done(self, record: object) -> None: ...

    work = WorkFolder()
    uploader.sources = work
    interrupt_after_parts(uploader, 1)
    with pytest.raises(Stopped):
        uploader.upload(movie)
    first_eid = journal.by_path(str(movie)).eid  # type: ignore[union-attr]
    work.made = 1  # the work file was lost and made again
    uploader.stop = threading.Event()
    result = uploader.upload(movie)
    assert result.eid != first_eid
    assert emulator.object_bytes(result.eid) == remuxes[1].read_bytes()
    assert first_eid not in emulator.backend.captures
    assert journal.by_path(str(movie)).identity.size == movie.stat().st_size  # type: ignore[union-attr]
