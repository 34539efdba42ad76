"""A folder that changed hands while its owner was down (issue 31's leftover): the owner, started
again, gives up what it began there (its unfinished capture deleted, never completed) and hands
the files over; the new owner uploads only what the journal it took the folder over from handed
to it, and its holds say who watched the folder and how that ended. The daemons themselves,
killed -9 mid-upload: `test_one_journal_per_folder.py`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teleport_sync.api import TeleportClient, build_client
from teleport_sync.config import WatchSettings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.engine import Paused, Uploader
from teleport_sync.journal import Journal, UploadState
from teleport_sync.models import FileIdentity, UploadedPart
from teleport_sync.retry import RetryPolicy
from teleport_sync.status.report import status_rows
from teleport_sync.watch.claim import MARKER, Claim, Claims, parse_marker
from teleport_sync.watch.handoff import HANDOFF_DIR, HandOff, write_handoff
from teleport_sync.watch.lostjournal import (
    hold_claimed,
    hold_existing,
    journal_id,
    retell_claimed,
    take_handoffs,
    tell_done,
)

from .conftest import FakeClock
from .helpers import MIB, make_zip
from .test_one_journal_per_folder import Clock


def test_the_owner_keeps_whom_it_took_the_folder_over_from_across_its_restarts(
    tmp_path: Path,
) -> None:
    """The marker says whose claim its owner took over: the old owner, started again, reads
    there that the folder was taken from it (and hands over), and the new owner still accepts
    hand-overs after its own restart."""
    mono, wall = Clock(0.0), Clock(5_000.0)

    def station(name: str) -> Claims:
        journal = tmp_path / f"{name}.sqlite3"
        return Claims(name, journal, [tmp_path], monotonic=mono, wall=wall, os_lock=False)

    first = station("a")
    first.start()
    second = station("b")
    second.roots[0].fresh = False
    assert second.beat() == []
    mono.now += 61  # "a" was killed: no heartbeat for a whole lease
    assert second.beat()[0].took_over is not None
    assert parse_marker((tmp_path / MARKER).read_text()).took_over_from == "a"  # type: ignore[union-attr]
    assert second.owned() == [], "owned once its claim is confirmed, a settle later"
    mono.now += second.settle_seconds
    assert [c.confirmed for c in second.beat()] == [True]
    assert second.owned() == [((tmp_path,), "a")]
    second.release()

    again = station("b")
    again.start()
    mono.now += again.settle_seconds
    again.beat()
    assert again.owned() == [((tmp_path,), "a")], "a restart keeps whom it took over from"
    claim = parse_marker((tmp_path / MARKER).read_text())
    assert claim is not None and (claim.run, claim.took_over_from) == (again.run, "a")
    restarted_a = station("a")
    assert restarted_a.start() == []
    owner = restarted_a.owner_of(tmp_path / "x.zip")
    assert owner is not None and owner[1].took_over_from == "a"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as opened:
        yield opened


def old_owner(journal_path: str = "/srv/a/journal.sqlite3") -> Claim:
    """The claim of the journal that watched the folder, as its marker last said (expired)."""
    return Claim("aaaa", journal_path, "nas", 812, "r", 5_000.0, 60.0, None, 3)


def rows(journal: Journal) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).name: r for r in status_rows(journal)}


def test_the_new_owner_releases_only_what_its_predecessor_handed_to_it(
    tmp_path: Path, journal: Journal
) -> None:
    inbox = tmp_path / "share"
    inbox.mkdir()
    latin1 = os.fsdecode(b"caf\xe9 take.zip")  # not UTF-8: a note keeps the OS's bytes
    names = ("scan.zip", "stranger.zip", "elsewhere.zip", "changed.zip", "later.zip", latin1)
    for name in names:
        make_zip(inbox / name)
    previous = old_owner()
    assert hold_existing(journal, inbox, WatchSettings(paths=[inbox]), "{name}", previous) == 6
    held = rows(journal)
    assert {r["phase"] for r in held.values()} == {"held"}
    reason = str(held["scan.zip"]["reason"])
    assert previous.who() in reason and "expired without a heartbeat" in reason
    assert "may have uploaded the file" in reason and "cannot be known" not in reason

    me = journal_id(journal)

    def note(name: str, *, sender: str = "aaaa", receiver: str = me, bump: int = 0) -> None:
        st = (inbox / name).stat()
        said = "its capture e1 was deleted"
        relative = os.fsencode(name)
        write_handoff(
            inbox, HandOff(sender, receiver, relative, st.st_size + bump, st.st_mtime_ns, said)
        )

    note("scan.zip")
    note(latin1)
    note("stranger.zip", sender="cccc")  # not the journal this one took the folder from
    note("elsewhere.zip", receiver="dddd")  # addressed to another owner
    note("changed.zip", bump=1)  # another version than the one given up
    note("../share/later.zip")  # outside the folder, even if it names a file in it
    released = take_handoffs(journal, (inbox,), "aaaa")

    assert sorted(released) == [(inbox / latin1, "aaaa"), (inbox / "scan.zip", "aaaa")]
    for name in (latin1, "scan.zip"):
        record = journal.by_path(str(inbox / name))
        assert record is not None and record.upload_state == UploadState.PENDING
    after = rows(journal)
    assert after["scan.zip"]["phase"] == "queued"
    held = {n for n in after if after[n]["phase"] == "held"}
    assert held == {"stranger.zip", "elsewhere.zip", "changed.zip", "later.zip"}
    assert list((inbox / HANDOFF_DIR).iterdir()) == [], "every note is consumed or dropped"
    record = journal.by_path(str(inbox / "scan.zip"))
    assert record is not None
    assert any("handed over by journal aaaa" in said for _, said in journal.events(record.id))

    note("later.zip")  # the same note, but this journal took the folder over from no one
    assert take_handoffs(journal, (inbox,), "") == []
    assert rows(journal)["later.zip"]["phase"] == "held"


def test_files_the_old_owner_completed_stay_held_naming_their_capture(tmp_path: Path) -> None:
    """The old owner, started again, lists what it completed there: the new owner's holds on
    those name the capture (nothing to do; approve would pay twice) and stay holds; a file it
    did not complete keeps saying it may have been uploaded."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    for name in ("done.zip", "other.zip"):
        make_zip(inbox / name)
    with Journal(tmp_path / "a.sqlite3") as old, Journal(tmp_path / "b.sqlite3") as new:
        st = (inbox / "done.zip").stat()
        identity = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "f")
        record = old.register(str(inbox / "done.zip"), identity, "bulk-images", "done.zip")
        old.record_created(record.id, "e-done", 5 * MIB, 1)
        old.mark_uploaded(record.id, "UPLOADED")
        previous = Claim(journal_id(old), str(old.path), "nas", 812, "r", 5_000.0, 60.0, None, 3)
        hold_existing(new, inbox, WatchSettings(paths=[inbox]), "{name}", previous)
        owner = Claim(
            journal_id(new),
            str(new.path),
            "nas",
            9,
            "r",
            5_000.0,
            60.0,
            None,
            1,
            previous.journal_id,
        )

        assert tell_done(old, inbox, owner) == 1
        assert take_handoffs(new, (inbox,), previous.journal_id) == [], "nothing released"
        held = rows(new)
        assert {r["phase"] for r in held.values()} == {"held"}
        reason = str(held["done.zip"]["reason"])
        assert "completed this file as capture e-done" in reason and str(old.path) in reason
        assert "second, paid capture" in reason
        assert "may have uploaded the file" in str(held["other.zip"]["reason"])


def test_a_journal_that_replaced_this_one_is_still_a_lost_journal(
    tmp_path: Path, journal: Journal
) -> None:
    """The marker's expired claim names this very journal's path: the journal was deleted or
    replaced, not taken over from another station; the hold says so."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    make_zip(inbox / "scan.zip")
    previous = old_owner(str(journal.path))
    hold_existing(journal, inbox, WatchSettings(paths=[inbox]), "{name}", previous)
    assert "cannot be known" in str(rows(journal)["scan.zip"]["reason"])


def test_holds_naming_the_old_owner_as_live_are_retold_at_takeover(
    tmp_path: Path, journal: Journal
) -> None:
    inbox = tmp_path / "share"
    inbox.mkdir()
    make_zip(inbox / "scan.zip")
    previous = old_owner()
    hold_claimed(journal, inbox, previous, WatchSettings(paths=[inbox]), "{name}")
    assert "which uploads it" in str(rows(journal)["scan.zip"]["reason"])
    other = Claim("bbbb", "/srv/b/journal.sqlite3", "nas", 9, "r", 5_000.0, 60.0, None, 1)
    assert retell_claimed(journal, (inbox,), other) == 0, "only holds naming that journal"
    assert retell_claimed(journal, (inbox,), previous) == 1
    reason = str(rows(journal)["scan.zip"]["reason"])
    assert "which uploads it" not in reason and "took the folder over" in reason
    assert reason.startswith("held: ") and previous.who() in reason


@pytest.mark.parametrize("taken_from_us", [False, True])
def test_rows_not_begun_are_left_to_the_workers_when_the_owner_took_the_folder_from_us(
    tmp_path: Path, journal: Journal, taken_from_us: bool
) -> None:
    """The heartbeat never hands a row over: a worker may be starting its upload this very
    moment. The workers do, one per file (`FolderClaims.give_up`). A row whose create may have
    landed (an intent token) is the workers' in any case: the account must be read."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    for name in ("queued.zip", "creating.zip"):
        path = make_zip(inbox / name)
        st = path.stat()
        identity = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
        record = journal.register(str(path), identity, "bulk-images", name)
    journal.mark_create_intent(record.id, "feedc0de")
    me = journal_id(journal)
    owner = Claim(
        "bbbb",
        "/srv/b/j.sqlite3",
        "nas",
        9,
        "r",
        5_000.0,
        60.0,
        None,
        1,
        me if taken_from_us else "",
    )
    hold_claimed(journal, inbox, owner, WatchSettings(paths=[inbox]), "{name}")
    after = rows(journal)
    assert after["creating.zip"]["phase"] != "held"
    if taken_from_us:
        assert after["queued.zip"]["upload_state"] == "pending"
    else:
        assert after["queued.zip"]["phase"] == "held"
        assert "which uploads it" in str(after["queued.zip"]["reason"])
    assert not (inbox / HANDOFF_DIR).exists()


# -- the engine's side: an unfinished upload given up, against the emulator ---------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=31, chunk_size=5 * MIB, processing_delay_seconds=60)


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[TeleportClient]:
    with build_client(
        base_url=emulator.url,
        auth_url=emulator.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
        policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    ) as made:
        yield made


class HoldCompletion:
    """A completion gate that holds every file (as a pose hold does): the parts all go up,
    `/uploaded` is never sent."""

    def applies(self, record: object) -> bool:
        return True

    def start(self, record: object) -> None: ...

    def wait(self, record: object) -> str | None:
        return "held for the test"


def all_parts_up(client: TeleportClient, journal: Journal, path: Path) -> int:
    uploader = Uploader(client, journal, clock=FakeClock())
    uploader.completion = HoldCompletion()
    with pytest.raises(Paused):
        uploader.upload(path)
    record = journal.by_path(str(path))
    assert record is not None and record.upload_state == UploadState.WAITING
    return record.id


@pytest.mark.parametrize("completed", [False, True])
def test_giving_up_deletes_only_a_capture_never_completed(
    emulator: EmulatorServer,
    client: TeleportClient,
    journal: Journal,
    tmp_path: Path,
    completed: bool,
) -> None:
    """Every part is up: `/uploaded` may have been sent before the kill, its answer lost. Then
    the capture is the station's, completed and paid: journaled as uploaded and kept (§3).
    Else it is deleted, and the row says so."""
    path = make_zip(tmp_path / "scan.zip", pad=6 * MIB)
    file_id = all_parts_up(client, journal, path)
    record = journal.get(file_id)
    assert record.eid is not None
    if completed:  # the answer to a completion sent just before the kill, lost
        parts = journal.parts(file_id)
        client.complete_upload(
            record.eid, [UploadedPart(number=n, etag=parts[n].etag) for n in parts]
        )
    told: list[list[str]] = []

    def why(deleted: list[str]) -> str:
        told.append(deleted)
        return f"held: given up; capture {', '.join(deleted)} deleted"

    gave_up = Uploader(client, journal, clock=FakeClock()).give_up(record, why)

    after = journal.get(file_id)
    if completed:
        assert not gave_up and told == []
        assert after.upload_state == UploadState.UPLOADED and after.eid == record.eid
        assert emulator.backend.get(record.eid).completed_at is not None
    else:
        assert gave_up and told == [[record.eid]]
        assert record.eid not in emulator.backend.captures
        assert after.eid is None and after.upload_state == UploadState.REJECTED
        assert rows(journal)["scan.zip"]["phase"] == "held"


def test_giving_up_a_create_a_crash_cut_short_deletes_the_capture_it_made(
    emulator: EmulatorServer, client: TeleportClient, journal: Journal, tmp_path: Path
) -> None:
    """Killed between `POST /captures` and journaling its answer: the row has only its intent
    token; the capture carrying it is found on the account and deleted, not left behind."""
    path = make_zip(tmp_path / "scan.zip")
    uploader = Uploader(client, journal, clock=FakeClock())
    uploader.completion = HoldCompletion()
    with pytest.raises(Paused):
        uploader.upload(path)
    made = journal.by_path(str(path))
    assert made is not None and made.eid is not None
    # The journal as a kill right after the create left it: the intent, and no eid yet.
    record = journal.restart(made.id, made.identity, made.input_data_format, made.name, "test")
    token = journal.mark_create_intent(record.id, made.intent_nonce or "")
    assert token == made.intent_nonce
    record = journal.get(record.id)
    assert record.eid is None and record.intent_nonce is not None
    emulator.backend.captures[made.eid].name = f"scan.zip [tsync:{token}]"

    assert Uploader(client, journal, clock=FakeClock()).give_up(record, lambda d: f"held: {d}")
    assert made.eid not in emulator.backend.captures
    assert rows(journal)["scan.zip"]["reason"] == f"held: ['{made.eid}']"
