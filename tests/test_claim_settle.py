"""Two stations that claim one folder at the same instant (two machines on a share, no `flock`
between them) agree on one owner: a claim is written, then confirmed a settle later only if the
marker still names it (`watch.claim`). The protocol's decisions, with injected clocks, on a
real folder; the interleavings of two stations' reads and renames are played out on its marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from teleport_sync.config import WatchSettings
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.journal import Journal
from teleport_sync.status.report import status_rows
from teleport_sync.watch.claim import MARKER, Claim, Claims, parse_marker, settle_seconds_for
from teleport_sync.watch.lostjournal import hold_existing, retell_taken

from .helpers import make_zip, wait_for
from .test_faults import DaemonProcess, status
from .test_one_journal_per_folder import (
    Clock,
    captures_named,
    emulator_config,  # noqa: F401  (the fixture: a quick emulator)
    health,
    marker_journal,
    started,
    station,
)


def on_share(
    folder: Path, name: str, mono: Clock, wall: Clock, settle: float | None = None
) -> Claims:
    """A station on another machine: its own journal and host, no OS lock (a share)."""
    return Claims(
        name,
        folder / f"{name}.sqlite3",
        [folder],
        lease_seconds=60.0,
        monotonic=mono,
        wall=wall,
        host=f"host-{name}",
        os_lock=False,
        settle_seconds=settle,
    )


def marker_claim(folder: Path, *, confirmed: bool) -> bool:
    """Does the folder's marker hold a claim, confirmed (or still being confirmed)?"""
    try:
        claim = parse_marker((folder / MARKER).read_text())
    except OSError:
        return False
    return claim is not None and claim.claiming is not confirmed


def marker(folder: Path) -> tuple[str, str, bool]:
    claim = parse_marker((folder / MARKER).read_text())
    assert claim is not None
    return claim.journal_id, claim.run, claim.claiming


def uploads_from(claims: Claims, folder: Path) -> bool:
    """Would this station upload a file from `folder` now?"""
    path = folder / "scan.zip"
    return claims.confirming(path) is None and claims.owner_of(path) is None


def test_a_lone_station_uploads_once_its_claim_is_confirmed_a_settle_later(
    tmp_path: Path,
) -> None:
    mono, wall = Clock(0.0), Clock(1_000.0)
    alone = on_share(tmp_path, "a", mono, wall)
    assert alone.settle_seconds == 3.0  # a twentieth of the 60 s lease
    assert [c.first for c in alone.start()] == [True]
    assert marker(tmp_path) == ("a", alone.run, True), "written as claiming"
    root, until = alone.confirming(tmp_path / "scan.zip")  # type: ignore[misc]
    assert root == tmp_path and until == 1_003.0
    assert not uploads_from(alone, tmp_path) and alone.owned() == []
    assert alone.next_due() == 3.0, "the heartbeat wakes for the confirmation, not in 15 s"
    mono.now += 2.9
    assert alone.beat() == [] and not uploads_from(alone, tmp_path)
    mono.now += 0.1
    changes = alone.beat()
    assert [c.confirmed for c in changes] == [True]
    assert uploads_from(alone, tmp_path) and alone.owned() == [((tmp_path,), "")]
    assert marker(tmp_path) == ("a", alone.run, False), "confirmed: `claiming` gone"
    assert alone.next_due() == alone.beat_seconds == 15.0
    assert alone.statuses()[tmp_path]["claim_confirming_until"] is None


@pytest.mark.parametrize("last", ["a", "b"])
def test_two_stations_that_both_read_before_either_wrote_agree_on_the_last_rename(
    tmp_path: Path, last: str
) -> None:
    """Both read the folder unclaimed, both rename their claim over the marker: the share keeps
    the last rename, both read it after the settle, and only its writer uploads."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    stations = {name: on_share(tmp_path, name, mono, wall) for name in "ab"}
    first, second = ("b", "a") if last == "a" else ("a", "b")
    stations[first].start()
    # The second read the folder before the first's rename landed: it saw no marker.
    os.unlink(tmp_path / MARKER)
    stations[second].start()
    assert marker(tmp_path)[0] == last
    for claims in stations.values():
        assert not uploads_from(claims, tmp_path), "nothing uploads before confirmation"
    mono.now += 3.0
    with capture_logs() as logs:
        changes = {name: claims.beat() for name, claims in stations.items()}
    loser = first
    assert [c.confirmed for c in changes[last]] == [True]
    lost = changes[loser]
    assert lost and lost[0].lost_to is not None and lost[0].lost_to.journal_id == last
    assert uploads_from(stations[last], tmp_path)
    assert not uploads_from(stations[loser], tmp_path)
    owner = stations[loser].owner_of(tmp_path / "scan.zip")
    assert owner is not None and owner[1].host == f"host-{last}"
    assert any("claimed this watch folder at the same moment" in e["event"] for e in logs)
    # The marker never flips: the loser never writes it again, the winner keeps beating.
    for _ in range(8):
        mono.now += 15
        for claims in stations.values():
            claims.beat()
        assert marker(tmp_path)[:2] == (last, stations[last].run)
    assert not uploads_from(stations[loser], tmp_path)


def test_a_takeover_lost_at_the_confirmation_is_not_shown_as_a_takeover(tmp_path: Path) -> None:
    """Two stations take a dead station's expired claim over at once: the loser's `health` and
    `status` name the winner as the folder's owner, and no longer say it took the folder over."""
    mono, wall = Clock(0.0), Clock(100_000.0)
    (tmp_path / MARKER).write_text(DEAD_STATION)
    first, second = on_share(tmp_path, "a", mono, wall), on_share(tmp_path, "b", mono, wall)
    assert first.start()[0].took_over is not None
    (tmp_path / MARKER).write_text(DEAD_STATION)  # what the second read: the expired claim
    assert second.start()[0].took_over is not None
    assert first.statuses()[tmp_path]["taken_over_from"] is not None
    mono.now += 3.0
    lost = first.beat()
    assert lost and lost[0].lost_to is not None and lost[0].lost_to.journal_id == "b"
    shown = first.statuses()[tmp_path]
    assert shown["taken_over_from"] is None
    assert shown["claimed_by"]["journal_id"] == "b"  # type: ignore[index]
    assert [c.confirmed for c in second.beat()] == [True]
    assert second.statuses()[tmp_path]["taken_over_from"] is not None


def test_a_station_that_reads_a_peers_unconfirmed_claim_contends(tmp_path: Path) -> None:
    """A claim written a moment ago, not confirmed yet, is live: the second station never
    renames over it, and names it (and that it is being claimed) in its hold."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    first, second = on_share(tmp_path, "a", mono, wall), on_share(tmp_path, "b", mono, wall)
    first.start()
    assert second.start() == []
    owner = second.owner_of(tmp_path / "scan.zip")
    assert owner is not None and owner[1].journal_id == "a" and owner[1].claiming
    assert marker(tmp_path)[0] == "a"
    mono.now += 3.0
    assert [c.confirmed for c in first.beat()] == [True]
    second.beat()
    assert uploads_from(first, tmp_path) and not uploads_from(second, tmp_path)


def test_a_peer_whose_rename_landed_after_the_settle_is_found_before_the_next_upload(
    tmp_path: Path,
) -> None:
    """Outside the assumption (a peer stopped between its read and its rename for longer than
    the settle): the owner confirmed, then the peer's claim lands. The owner reads the marker
    again before each upload starts (`check`) and steps down at once, not at its next beat."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    owner, late = on_share(tmp_path, "a", mono, wall), on_share(tmp_path, "b", mono, wall)
    owner.start()
    mono.now += 3.0
    owner.beat()
    assert owner.check(tmp_path / "scan.zip") == [], "still ours: nothing changes"
    os.unlink(tmp_path / MARKER)  # what the late peer read: nothing
    late.start()
    stepped = owner.check(tmp_path / "scan.zip")
    assert stepped and stepped[0].lost_to is not None and stepped[0].lost_to.journal_id == "b"
    assert not uploads_from(owner, tmp_path)
    mono.now += 3.0
    late.beat()
    assert uploads_from(late, tmp_path) and marker(tmp_path)[0] == "b"


def test_a_restart_on_its_own_marker_is_confirmed_too(tmp_path: Path) -> None:
    """A station started again finds its own journal's marker: it claims it anew, through the
    same settle (another machine may be taking the folder over at this very moment)."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    before = on_share(tmp_path, "a", mono, wall)
    before.start()
    mono.now += 3.0
    before.beat()
    before.release()
    again = on_share(tmp_path, "a", mono, wall)
    assert again.start() == []
    assert marker(tmp_path) == ("a", again.run, True)
    assert not uploads_from(again, tmp_path)
    mono.now += 3.0
    assert [c.confirmed for c in again.beat()] == [True]


def test_a_claim_whose_marker_vanished_while_settling_is_written_and_settled_again(
    tmp_path: Path,
) -> None:
    mono, wall = Clock(0.0), Clock(1_000.0)
    alone = on_share(tmp_path, "a", mono, wall)
    alone.start()
    os.unlink(tmp_path / MARKER)
    mono.now += 3.0
    assert alone.beat() == [] and not uploads_from(alone, tmp_path)
    assert marker(tmp_path) == ("a", alone.run, True)
    mono.now += 3.0
    assert [c.confirmed for c in alone.beat()] == [True]


def test_a_marker_that_cannot_be_read_at_the_confirmation_is_never_written_over(
    tmp_path: Path,
) -> None:
    """A read that fails (an I/O error on a share; played by a folder in the marker's place)
    says nothing of whose claim is there: the station neither confirms nor writes over it,
    says so once, and looks again a settle later."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    alone = on_share(tmp_path, "a", mono, wall)
    alone.start()
    os.unlink(tmp_path / MARKER)
    (tmp_path / MARKER).mkdir()  # open() fails: IsADirectoryError
    with capture_logs() as logs:
        for _ in range(3):
            mono.now += 3.0
            assert alone.beat() == [] and not uploads_from(alone, tmp_path)
    said = [e for e in logs if "cannot read the watch folder's marker" in e["event"]]
    assert len(said) == 1 and said[0]["root"] == str(tmp_path)
    assert (tmp_path / MARKER).is_dir(), "not written over"
    (tmp_path / MARKER).rmdir()
    mono.now += 3.0
    assert alone.beat() == []  # gone: written again, and settled again
    mono.now += 3.0
    assert [c.confirmed for c in alone.beat()] == [True]
    # An owner's heartbeat skips a beat rather than write over a marker it cannot read.
    os.unlink(tmp_path / MARKER)
    (tmp_path / MARKER).mkdir()
    mono.now += 15.0
    assert alone.beat() == [] and (tmp_path / MARKER).is_dir()


def test_settle_zero_confirms_at_once_for_a_folder_no_other_machine_reaches(
    tmp_path: Path,
) -> None:
    alone = on_share(tmp_path, "a", Clock(0.0), Clock(1_000.0), settle=0.0)
    alone.start()
    assert uploads_from(alone, tmp_path) and marker(tmp_path)[2] is False


def test_the_settle_derives_from_the_lease_and_must_fit_in_a_quarter_of_it() -> None:
    assert settle_seconds_for(60.0) == 3.0
    assert settle_seconds_for(20.0) == 1.0
    assert settle_seconds_for(3600.0) == 3.0, "a long lease does not slow a lone station"
    assert settle_seconds_for(60.0, 10.0) == 10.0
    assert WatchSettings(claim_lease_seconds=8, claim_settle_seconds=2).claim_settle_seconds == 2
    with pytest.raises(ValidationError) as refused:
        WatchSettings(claim_lease_seconds=8, claim_settle_seconds=3)
    assert "claim_settle_seconds = 3 is longer than a quarter of claim_lease_seconds" in str(
        refused.value
    )


def test_a_folder_a_reload_adds_is_confirmed_a_settle_later_not_at_the_next_heartbeat(
    tmp_path: Path,
) -> None:
    mono, wall = Clock(0.0), Clock(1_000.0)
    first, added = tmp_path / "first", tmp_path / "added"
    first.mkdir()
    added.mkdir()
    claims = on_share(first, "a", mono, wall)
    claims.roots = []  # as built for `first` only, below
    claims.set_roots([first])
    mono.now += 3.0
    claims.beat()
    assert claims.next_due() == 15.0
    mono.now += 5.0
    claims.set_roots([first, added])
    assert claims.next_due() == 3.0, "the heartbeat thread wakes for the new folder's claim"
    assert claims.confirming(added / "scan.zip") is not None
    mono.now += 3.0
    assert [(c.root, c.confirmed) for c in claims.beat()] == [(added, True)]


def test_holds_made_as_the_folders_new_owner_name_the_peer_that_won_it(tmp_path: Path) -> None:
    """Taking an expired claim over holds what the old owner left; if a peer's claim wins at
    the confirmation, those holds name the folder's owner now, not this journal's takeover."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    make_zip(inbox / "left.zip")
    previous = Claim("aaaa", "/srv/a/journal.sqlite3", "nas", 812, "r", 5_000.0, 60.0, None, 3)
    winner = Claim("bbbb", "/srv/b/journal.sqlite3", "studio", 77, "w", 5_100.0, 60.0)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert hold_existing(journal, inbox, WatchSettings(paths=[inbox]), "{name}", previous) == 1
        assert "took the folder over" in str(status_rows(journal)[0]["reason"])
        assert retell_taken(journal, (inbox,), winner) == 1
        row = status_rows(journal)[0]
    assert row["phase"] == "held"
    assert winner.who() in str(row["reason"]) and previous.who() not in str(row["reason"])


# -- real daemons ---------------------------------------------------------------------------------

TWO_HOSTS = (
    "claim_os_lock = false\n"  # no flock between them: two machines on one share
    "claim_settle_seconds = 1.0\n"
)


def test_two_daemons_started_at_the_same_instant_upload_each_file_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Five rounds: two real daemons with their own journals, no lock between them, started at
    the same instant on a folder holding a new take. Each round: exactly one capture of it on
    the emulator, made by the daemon the marker names; the other holds it naming that journal,
    and its `status` says so. The winner's first upload comes after its claim's confirmation."""
    for round_ in range(5):
        race_once(emulator, tmp_path, round_)


def race_once(emulator: EmulatorServer, tmp_path: Path, round_: int) -> None:
    """One round: both daemons started at once on a folder holding a new take."""
    home = tmp_path / f"round{round_}"
    inbox = home / "share"
    inbox.mkdir(parents=True)
    name = f"take{round_}.zip"
    make_zip(inbox / name)
    configs = {
        who: station(home, emulator, who, inbox, watch=TWO_HOSTS, lease=4.0)
        for who in ("left", "right")
    }
    daemons = {who: DaemonProcess(cfg, home / f"{who}.log") for who, cfg in configs.items()}
    try:
        wait_for(lambda: marker_claim(inbox, confirmed=True), 60, "a confirmed claim")
        owner_journal = marker_journal(inbox)
        winner = next(w for w in daemons if str(home / w / "journal.sqlite3") == owner_journal)
        loser = next(w for w in daemons if w != winner)
        uploaded_by_one_held_by_the_other(configs[winner], configs[loser], name)
        reason = str(status(configs[loser])[name]["reason"])
        assert owner_journal in reason
        assert f"pid {daemons[winner].process.pid}" in reason
        assert marker_journal(inbox) == owner_journal, "the marker never changed hands"
    finally:
        for daemon in daemons.values():
            assert daemon.stop() == 0
    assert captures_named(emulator, name) == 1, f"round {round_}: paid once"
    events = [
        json.loads(line)
        for line in (home / f"{winner}.log").read_text().splitlines()
        if line.startswith("{")
    ]
    said = [e["event"] for e in events]
    confirmed = said.index("claim on the watch folder confirmed: uploading from it")
    created = [
        i
        for i, e in enumerate(events)
        if e.get("path", "").endswith(name) and e["event"].startswith("capture created")
    ]
    assert created and min(created) > confirmed, said
    assert (
        "claim on the watch folder confirmed: uploading from it"
        not in (home / f"{loser}.log").read_text()
    )


def uploaded_by_one_held_by_the_other(winner: Path, loser: Path, name: str) -> None:
    """Wait until the station configured by `winner` has `name` READY, and `loser` holds it."""
    wait_for(
        lambda: status(winner).get(name, {}).get("capture_state") == "READY",
        60,
        "the owner's upload",
    )
    wait_for(lambda: status(loser).get(name, {}).get("phase") == "held", 60, "the other's hold")


def test_a_file_waits_for_the_claims_confirmation_and_status_says_why(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A station whose claim is being confirmed (a settle made long here, to look at it):
    the file dropped meanwhile is journaled and queued, nothing reaches the account, and
    `status` and the file's row say why and until when."""
    inbox = tmp_path / "share"
    inbox.mkdir()
    config = station(
        tmp_path,
        emulator,
        "alone",
        inbox,
        watch="claim_settle_seconds = 30.0\n",
        lease=120.0,
    )
    daemon = DaemonProcess(config, tmp_path / "alone.log")
    try:
        wait_for(lambda: started(daemon), 60, "the daemon")
        assert marker_claim(inbox, confirmed=False)
        make_zip(inbox / "early.zip")
        wait_for(lambda: status(config).get("early.zip", {}).get("phase") == "queued", 60, "queued")
        row = status(config)["early.zip"]
        assert "claim on " + str(inbox) + " is being confirmed" in str(row["reason"])
        assert "uploads from it begin at" in str(row["reason"])
        shown = subprocess.run(
            [sys.executable, "-m", "teleport_sync", "--config", str(config), "status"],
            capture_output=True,
            text=True,
        ).stdout
        assert f"{inbox}: uploads wait: this station's claim" in shown
        code, report = health(config)
        assert code == 0, "a claim being confirmed is no fault"
        assert isinstance(report["roots"][0]["claim_confirming_until"], float)  # type: ignore[index]
        assert captures_named(emulator, "early.zip") == 0
        assert emulator.backend.captures == {}, "nothing uploaded before the confirmation"
    finally:
        assert daemon.stop() == 0


DEAD_STATION = (
    "dead0000\n/gone/journal.sqlite3\nhost=old-pc\npid=4242\nrun=r\n"
    "renewed_at=1000.000\nlease_seconds=4\nbeat=9\n"
)


@pytest.mark.parametrize("b_read", ["no marker", "a dead station's expired claim"])
def test_a_peer_that_did_not_see_the_claim_renames_its_own_over_it_and_one_uploads(
    emulator: EmulatorServer, tmp_path: Path, b_read: str
) -> None:
    """The interleaving the settle exists for, with two real daemons: station A has renamed
    its claim over the marker and waits to confirm it; station B read the folder before that
    rename reached it (played here by putting back what B read: no marker, or the expired
    claim of a station long dead that both take over) and renames its own. B (a short settle)
    confirms and uploads; A, reading the marker at its confirmation, finds B's claim and steps
    down: it never uploads, holds the files naming B (also those it had held as the dead
    station's successor), and says it lost a claim made at the same moment. One capture."""
    share = tmp_path / "share"
    share.mkdir()
    make_zip(share / "scan.zip")
    dead = b_read != "no marker"
    if dead:
        (share / MARKER).write_text(DEAD_STATION)
    reached = tmp_path / "mnt-share"  # how B reaches the share: mounted later than A's start
    slow = station(
        tmp_path, emulator, "a", share, watch=TWO_HOSTS.replace("1.0", "8.0"), lease=32.0
    )
    quick = station(
        tmp_path, emulator, "b", reached, watch=TWO_HOSTS.replace("1.0", "0.2"), lease=2.0
    )
    b = DaemonProcess(quick, tmp_path / "b.log")
    a = None
    try:
        wait_for(lambda: started(b), 60, "station B, its share not mounted yet")
        a = DaemonProcess(slow, tmp_path / "a.log")
        a_journal = str(tmp_path / "a" / "journal.sqlite3")
        wait_for(
            lambda: marker_claim(share, confirmed=False) and marker_journal(share) == a_journal,
            60,
            "A's claim, written and not confirmed yet",
        )
        if dead:
            (share / MARKER).write_text(DEAD_STATION)  # what B's read will find
        else:
            os.unlink(share / MARKER)
        reached.symlink_to(share, target_is_directory=True)
        b_journal = str(tmp_path / "b" / "journal.sqlite3")
        wait_for(lambda: "another journal claimed this watch folder" in a.log.read_text(), 60, "A")
        name = "scan.zip"
        if dead:  # held by both (the dead station may have uploaded it); a new file goes once
            name = "new.zip"
            wait_for(lambda: "scan.zip" in status(quick), 60, "B's hold of what it found")
            make_zip(share / name)
        wait_for(
            lambda: status(quick).get(name, {}).get("capture_state") == "READY",
            60,
            "B's upload",
        )
        for held in {"scan.zip", name}:
            wait_for(lambda h=held: status(slow).get(h, {}).get("phase") == "held", 60, "A")
            reason = str(status(slow)[held]["reason"])
            assert b_journal in reason and f"pid {b.process.pid}" in reason
        assert marker_journal(share) == b_journal
        if dead:
            assert status(quick)["scan.zip"]["phase"] == "held"
    finally:
        if a is not None:
            assert a.stop() == 0
        assert b.stop() == 0
    assert captures_named(emulator, name) == 1
    assert captures_named(emulator, "scan.zip") == (0 if dead else 1)
    assert "confirmed: uploading from it" not in (tmp_path / "a.log").read_text()


def test_two_daemons_taking_over_a_dead_stations_folder_at_once_agree_on_one_owner(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A folder whose station died long ago (its claim expired), and two stations started on
    it at the same instant, three times: both may take it over, one confirms. What the dead
    station left stays held by both (it may have uploaded it), the loser's hold naming the
    winner; a file dropped afterwards is uploaded once."""
    for round_ in range(3):
        home = tmp_path / f"round{round_}"
        share = home / "share"
        share.mkdir(parents=True)
        make_zip(share / "left.zip")
        (share / MARKER).write_text(DEAD_STATION)
        take_over_together(emulator, home, share, f"new{round_}.zip")
    assert captures_named(emulator, "left.zip") == 0


def take_over_together(emulator: EmulatorServer, home: Path, share: Path, name: str) -> None:
    configs = {
        who: station(home, emulator, who, share, watch=TWO_HOSTS, lease=4.0)
        for who in ("left", "right")
    }
    daemons = {who: DaemonProcess(cfg, home / f"{who}.log") for who, cfg in configs.items()}
    journals = {str(home / who / "journal.sqlite3"): who for who in daemons}
    try:
        wait_for(
            lambda: marker_claim(share, confirmed=True) and marker_journal(share) in journals,
            60,
            "a confirmed claim of one of the two",
        )
        owner = marker_journal(share)
        winner = journals[owner]
        loser = next(w for w in daemons if w != winner)
        wait_for(lambda: started(daemons[loser]), 60, "the other daemon")
        make_zip(share / name)
        uploaded_by_one_held_by_the_other(configs[winner], configs[loser], name)
        left = status(configs[loser])["left.zip"]
        assert left["phase"] == "held"
        assert owner in str(left["reason"]), "the loser names the folder's owner now"
        kept = status(configs[winner])["left.zip"]
        assert kept["phase"] == "held" and "/gone/journal.sqlite3" in str(kept["reason"])
    finally:
        for daemon in daemons.values():
            assert daemon.stop() == 0
    assert captures_named(emulator, name) == 1
