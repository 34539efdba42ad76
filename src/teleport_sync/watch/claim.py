"""One live journal per watch folder: a claim with a lease, kept fresh in the folder's marker.

Two daemons with their own journals on one folder (the system service and a `run` from a
user's account, or two machines mounting one share) would both upload every file dropped in
it: two captures, paid twice. So each watch root is claimed by one journal. The claim lives in
the root's hidden marker (`.teleport-sync-journal`), which every daemon can read wherever the
folder is mounted:

    <journal id>            (first line: what older versions read)
    <journal path>
    host=<hostname>  pid=<pid>  run=<random id of this start>
    renewed_at=<owner's wall clock, epoch seconds>  lease_seconds=<lease>   (one per line)
    beat=<n>                  (counts the owner's heartbeats: the marker changes at each one,
                               whatever the clocks say)
    took_over_from=<journal id>   (the journal whose claim this owner took over, if it did:
                               that journal, started again, hands over what it never
                               completed (`handoff`); kept across the owner's restarts)
    claiming=1                (only while the claim waits to be confirmed: see below)
    stopped_at=<wall clock>   (only once the owner stopped cleanly: the claim is free)

The owner rewrites it (a new file renamed over the old one, so a reader never sees half of it)
every quarter of the lease: its heartbeat. Where the folder is local the owner also holds an
exclusive `flock` on the folder itself, which the kernel drops when the process dies; NFS and
SMB locks are not trusted, so the heartbeat is what counts there.

Another daemon that finds a live claim (the lock is held, or the heartbeat moves) is a
*contender*: it does not upload from that folder (the daemon holds its files, naming the
owner). A claim is expired when its marker has not changed for a whole lease by the reader's
own clock (wall clocks of two machines may disagree; a heartbeat that moves cannot lie), or,
on first sight, when its last heartbeat is older than two leases by the reader's wall clock.
An expired claim (or one written by a version without leases) is taken over, and said.

The marker never flips between two owners: only the owner writes it, and an owner that finds
someone else's claim in the marker at its next heartbeat (an owner suspended for longer than
its lease and taken over) steps down and says so, instead of writing it back.

**Two stations that claim at the same instant** (two machines on one share, where `flock`
does not reach across hosts) must not both upload. So a claim is made in two steps:

1. *Write.* The candidate renames its claim, with its own random start id (`run`) and
   `claiming=1`, over the marker (atomic: the marker always holds one whole claim, the last
   one renamed).
2. *Confirm.* It waits `[watch] claim_settle_seconds` (by default a twentieth of the lease, at
   most 3 s: `settle_seconds_for`), then reads the marker again, freshly (a new `open`), and
   owns the folder only if the marker still names its own journal *and* start id. Else the
   marker names the peer that renamed its claim last: that one is the owner, this one
   contends (holds its files naming it) like any second station.

Nothing is uploaded from a folder before its claim is confirmed (`confirming`): files are
taken into the journal meanwhile and wait, and `status` says why. Why one winner: a candidate
writes only after reading a marker it may take (none, its own earlier start's, stopped, or
expired); a peer's claim renamed before that read would have been seen as live. So the two
renames lie within one read-to-rename interval of each other (milliseconds), and the settle is
far longer: when the first to confirm reads the marker again, the later rename has landed,
and both read the same last claim. Ties need no rule: the share orders the two renames, and
the last one wins for both readers. The assumptions (README "One folder, one live journal"):
a rename on the share is atomic and visible to a fresh `open` of another client once it
returned (NFS close-to-open consistency, the default; not `nocto`, or an `actimeo` longer
than the settle; SMB with leases or `cache=strict`), and no station stops between its read
and its rename for longer than the settle (a VM paused right then). Should that fail anyway,
an owner reads the marker again before each file it starts (`check`) and at each heartbeat,
and steps down at once when the marker names another claim.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..logging import get_logger, printable

MARKER = ".teleport-sync-journal"
DEFAULT_LEASE_SECONDS = 60.0
MAX_LEASE_SECONDS = 3600.0  # [watch] claim_lease_seconds' upper bound (config.py)
MAX_DEFAULT_SETTLE_SECONDS = 3.0


def settle_seconds_for(lease_seconds: float, configured: float | None = None) -> float:
    """How long a claim waits before it is confirmed: `configured` ([watch]
    claim_settle_seconds), else a twentieth of the lease, at most 3 s. A peer's read and rename
    take milliseconds on a LAN share; 3 s covers a loaded server, and is all a lone station
    waits before its first upload (the lease of 60 s gives 3 s)."""
    if configured is not None:
        return configured
    return min(lease_seconds / 20, MAX_DEFAULT_SETTLE_SECONDS)


log = get_logger("teleport_sync.daemon")


@dataclass(frozen=True)
class Claim:
    """What a root's marker says: which journal watches the folder, from where, how fresh."""

    journal_id: str
    journal: str = "?"
    host: str = "?"
    pid: int | None = None
    run: str = ""
    renewed_at: float | None = None  # None: written by a version without leases
    lease_seconds: float | None = None
    stopped_at: float | None = None  # the owner stopped cleanly: free to take
    beat: int = 0
    took_over_from: str = ""  # the journal whose expired claim this owner took over
    claiming: bool = False  # written, not confirmed yet: its writer uploads nothing so far

    def who(self) -> str:
        """`journal 0123abcd (/var/lib/teleport-sync/journal.sqlite3) on host nas, pid 812`"""
        pid = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        return f"journal {self.journal_id} ({self.journal}) on host {self.host}, {pid}"

    def to_json(self) -> dict[str, object]:
        return {
            "journal_id": self.journal_id,
            "journal": self.journal,
            "host": self.host,
            "pid": self.pid,
            "renewed_at": self.renewed_at,
            "lease_seconds": self.lease_seconds,
            "stopped_at": self.stopped_at,
            "claiming": self.claiming,
        }


def parse_marker(text: str) -> Claim | None:
    # The marker lies in the watch folder, which anyone who drops files there can write: its
    # text reaches health, status and held files' reasons, so control characters are escaped
    # here (a name shown, never obeyed; ours never hold any, so comparisons are unchanged).
    lines = [printable(line) for line in text.splitlines()]
    if not lines or not lines[0].strip():
        return None
    fields = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
    try:
        return Claim(
            journal_id=lines[0].split()[0],
            journal=lines[1].strip() if len(lines) > 1 else "?",
            host=fields.get("host", "?"),
            pid=int(fields["pid"]) if fields.get("pid", "").isdigit() else None,
            run=fields.get("run", ""),
            renewed_at=float(fields["renewed_at"]) if "renewed_at" in fields else None,
            lease_seconds=_lease(fields["lease_seconds"]) if "lease_seconds" in fields else None,
            stopped_at=float(fields["stopped_at"]) if "stopped_at" in fields else None,
            beat=int(fields.get("beat", "0")),
            took_over_from=fields.get("took_over_from", "").strip(),
            claiming=fields.get("claiming", "").strip() == "1",
        )
    except ValueError:
        return None


def _lease(text: str) -> float:
    """A marker's lease, as honoured: at most the longest a config may set. A lease of years,
    or not a number (a marker hand-edited, damaged, or written by anyone who can write the
    folder), would otherwise hold the folder for as long, naming a daemon long gone."""
    lease = float(text)
    return lease if math.isfinite(lease) and 0 < lease <= MAX_LEASE_SECONDS else MAX_LEASE_SECONDS


def format_marker(claim: Claim) -> str:
    return (
        f"{claim.journal_id}\n{claim.journal}\nhost={claim.host}\npid={claim.pid}\n"
        f"run={claim.run}\nrenewed_at={claim.renewed_at:.3f}\n"
        f"lease_seconds={claim.lease_seconds:g}\nbeat={claim.beat}\n"
        + (f"took_over_from={claim.took_over_from}\n" if claim.took_over_from else "")
        + ("claiming=1\n" if claim.claiming else "")
        + (f"stopped_at={claim.stopped_at:.3f}\n" if claim.stopped_at is not None else "")
    )


def read_marker(root: Path) -> str | None:
    """The marker's text, or None when there is none (or it cannot be read).

    Each call opens the file anew: on NFS an `open` revalidates the file's attributes and name
    with the server (close-to-open consistency), so a peer's rename that returned before is
    seen, whatever the attribute cache holds. The marker is read whole with the page cache's
    help; O_DIRECT is not needed, as a renamed marker is a new file (new inode) whose pages no
    reader has cached."""
    try:
        return (root / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def lock_is_held(root: Path) -> bool:
    """Does a process on this machine hold the folder's claim lock? (False when unknown.)"""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no locks here (some network file systems): the lease decides
    finally:
        os.close(fd)  # closing drops a lock this call took
    return False


def looks_live(claim: Claim, root: Path, wall: float) -> bool:
    """One look, no history (for `approve`): is this claim live? The lock, or a heartbeat
    younger than two leases by this machine's clock."""
    if lock_is_held(root):
        return True
    if claim.renewed_at is None or claim.lease_seconds is None or claim.stopped_at is not None:
        return False
    return wall - claim.renewed_at <= 2 * claim.lease_seconds


def owner_above(path: Path) -> tuple[Path, Claim] | None:
    """The nearest folder above `path` with a marker, and its claim."""
    for folder in path.parents:
        text = read_marker(folder)
        if text is not None:
            claim = parse_marker(text)
            return (folder, claim) if claim is not None else None
    return None


@dataclass
class _Root:
    """One watched folder, as this daemon sees its claim."""

    path: Path
    aliases: tuple[Path, ...] = ()  # every configured path that reaches this folder
    ours: bool = False
    owner: Claim | None = None  # the live claim of another journal, while contending
    taken_over_from: Claim | None = None
    # The journal id this daemon's claim took over (this start, or an earlier one: the marker
    # keeps it), or "": whose hand-overs it accepts (`handoff`).
    predecessor: str = ""
    lock_fd: int | None = None
    last_text: str | None = None  # the marker as last read (contender) or written (owner)
    unchanged_since: float = 0.0  # our monotonic clock, when last_text was first seen
    fresh: bool = True  # not looked at yet: the first look may trust the wall clock
    # Ours, written but not confirmed yet: our monotonic clock's time to read the marker again
    # (`Claims._confirm`); None once confirmed (or not ours). Nothing is uploaded meanwhile.
    confirm_at: float | None = None
    confirm_by: float = 0.0  # the same moment by our wall clock (shown by `status`)
    unreadable: bool = False  # its marker could not be read (said once until it can again)


@dataclass(frozen=True)
class Change:
    """A claim that changed hands: taken (`took_over`: from whom) or lost (`lost_to`)."""

    root: Path
    took_over: Claim | None = None
    lost_to: Claim | None = None
    first: bool = False  # the folder had no marker: a first start
    confirmed: bool = False  # our claim, written a settle ago, still stands: uploads may begin


class _Roots:
    """A station's watch roots, as it sees their claims: what the daemon asks of them."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [_Root(paths[0], tuple(paths)) for paths in _by_folder(roots)]
        # The heartbeat thread, a reload and the upload workers share the roots' state.
        self._lock_state = threading.RLock()

    def _reaching(self, path: Path, which: Callable[[_Root], bool]) -> tuple[_Root, Path] | None:
        """The first root `which` accepts that `path` is in, and the configured path to it."""
        with self._lock_state:
            for root in self.roots:
                if which(root):
                    for alias in root.aliases:
                        if path == alias or path.is_relative_to(alias):
                            return root, alias
        return None

    def owner_of(self, path: Path) -> tuple[Path, Claim] | None:
        """(root, the other journal's live claim) when `path` is in a folder it owns."""
        found = self._reaching(path, lambda root: root.owner is not None)
        return None if found is None or found[0].owner is None else (found[1], found[0].owner)

    def owned(self) -> list[tuple[tuple[Path, ...], str]]:
        """(every configured path reaching it, the journal it was taken over from or "") of
        each folder this daemon owns (its claim confirmed)."""
        with self._lock_state:
            return [
                (r.aliases, r.predecessor) for r in self.roots if r.ours and r.confirm_at is None
            ]

    def confirming(self, path: Path) -> tuple[Path, float] | None:
        """(root, when by the wall clock) when `path` is in a folder whose claim this daemon
        wrote and has not confirmed yet: nothing may be uploaded from it until then."""
        found = self._reaching(path, lambda root: root.confirm_at is not None)
        return None if found is None else (found[1], found[0].confirm_by)

    def aliases_of(self, path: Path) -> tuple[Path, ...]:
        """Every configured path that reaches the root `path` (itself when not a root)."""
        with self._lock_state:
            return next((r.aliases for r in self.roots if r.path == path), (path,))

    def contended(self) -> list[tuple[Path, Claim]]:
        """(root, owner) of every folder another live journal owns."""
        with self._lock_state:
            return [(r.path, r.owner) for r in self.roots if r.owner is not None]

    def statuses(self) -> dict[Path, dict[str, object]]:
        """Per configured root: `claimed_by` (another journal's live claim, or None) and
        `taken_over_from` (the expired claim this daemon took over, or None)."""
        return {
            alias: {
                "claimed_by": root.owner.to_json() if root.owner else None,
                "taken_over_from": (
                    root.taken_over_from.to_json() if root.taken_over_from else None
                ),
                "claim_confirming_until": (
                    root.confirm_by if root.confirm_at is not None else None
                ),
            }
            for root in self.roots
            for alias in root.aliases
        }


class Claims(_Roots):
    """This daemon's claims on its watch roots: taken at start, renewed by `beat`."""

    def __init__(
        self,
        journal_id: str,
        journal_path: Path,
        roots: list[Path],
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
        os_lock: bool = True,
        settle_seconds: float | None = None,
    ) -> None:
        self.journal_id = journal_id
        self.journal_path = journal_path
        self.lease_seconds = lease_seconds
        self.settle_seconds = settle_seconds_for(lease_seconds, settle_seconds)
        self._monotonic = monotonic
        self._wall = wall
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.run = secrets.token_hex(6)
        # False: no `flock` (as between two machines on a share, where only the marker speaks).
        self.os_lock = os_lock
        super().__init__(roots)
        self._beat_due = 0.0  # our monotonic clock's time for the next heartbeat
        self._pen = _Pen(
            Claim(
                journal_id,
                str(journal_path),
                self.host,
                self.pid,
                self.run,
                lease_seconds=lease_seconds,
            ),
            wall,
            os_lock,
        )

    @property
    def beat_seconds(self) -> float:
        return self.lease_seconds / 4

    def start(self) -> list[Change]:
        """Claim every root that is free, ours or expired; contend for the others."""
        return self.beat()

    def next_due(self) -> float:
        """Seconds until the next `beat` is due: a heartbeat's period after the last one, or
        sooner when a claim waits to be confirmed (also one a reload wrote since)."""
        with self._lock_state:
            due = [self._beat_due, *(r.confirm_at for r in self.roots if r.confirm_at is not None)]
        return max(0.0, min(due) - self._monotonic())

    def beat(self) -> list[Change]:
        """The heartbeat: owners renew (or step down), contenders look for an expired claim."""
        changes = []
        with self._lock_state:
            self._beat_due = self._monotonic() + self.beat_seconds
            for root in self.roots:
                if not root.path.is_dir():
                    # Not there (a share not mounted yet): nothing to claim or renew, and the
                    # watcher already says the folder is missing. Claimed once it appears,
                    # as at first sight.
                    continue
                if root.ours and root.confirm_at is not None:
                    change = self._confirm(root)
                elif root.ours:
                    change = self._renew(root)
                else:
                    change = self._try_claim(root, first_sight=root.fresh)
                    root.fresh = False
                if change is not None:
                    changes.append(change)
        return changes

    def set_roots(self, roots: list[Path]) -> list[Change]:
        """A reload's roots: new folders are claimed now, folders no longer watched let go."""
        with self._lock_state:
            known = {root.path: root for root in self.roots}
            kept = []
            for paths in _by_folder(roots):
                root = known.pop(paths[0], None) or _Root(paths[0])
                root.aliases = tuple(paths)
                kept.append(root)
            for gone in known.values():
                self._pen.unlock(gone)
            self.roots = kept
        return self.beat_fresh()

    def beat_fresh(self) -> list[Change]:
        """Claim (or contend for) the roots not looked at yet."""
        changes = []
        with self._lock_state:
            for root in self.roots:
                if root.fresh and root.path.is_dir():
                    change = self._try_claim(root, first_sight=True)
                    root.fresh = False
                    if change is not None:
                        changes.append(change)
        return changes

    def release(self) -> None:
        """A clean stop: each claim is marked stopped (another journal may take the folder at
        once) and its lock let go. A daemon that dies instead leaves a lease to expire."""
        with self._lock_state:
            for root in self.roots:
                if root.ours and self._still_ours(root):
                    self._pen.write(root, stopped=True)
                self._pen.unlock(root)

    def _still_ours(self, root: _Root) -> bool:
        text = read_marker(root.path)
        claim = parse_marker(text) if text is not None else None
        return claim is not None and (claim.journal_id, claim.run) == (self.journal_id, self.run)

    def check(self, path: Path) -> list[Change]:
        """Before an upload starts from `path`: read its folder's marker again (cheap, one small
        file), and step down at once if it names another claim (`Change.lost_to`), instead of
        at the next heartbeat. Only for a folder this daemon owns."""
        with self._lock_state:
            found = self._reaching(path, lambda root: root.ours and root.confirm_at is None)
            if found is None:
                return []
            text = read_marker(found[0].path)
            claim = parse_marker(text) if text is not None else None
            if claim is None or self._is_ours(claim):
                return []
            return [self._step_down(found[0], claim, text, "before an upload")]

    # -- one root -------------------------------------------------------------------------------

    def _try_claim(self, root: _Root, *, first_sight: bool) -> Change | None:
        text = read_marker(root.path)
        claim = parse_marker(text) if text is not None else None
        if claim is not None and claim.journal_id == self.journal_id and first_sight:
            if not self._pen.lock(root):  # another daemon here is taking it over right now
                return self._contend(root, claim)
            return self._take(root, claim, first=False)  # ours, from an earlier start
        if claim is not None and claim.journal_id != self.journal_id:
            if self._live(root, claim, text, first_sight):
                return self._contend(root, claim)
        elif claim is not None and self._live(root, claim, text, first_sight):
            return self._contend(root, claim)  # our id, someone else's run: a copied journal
        if not self._pen.lock(root):
            return self._contend(root, claim or Claim("?", host="this machine"))
        if read_marker(root.path) != text:  # written while we looked: look again next beat
            self._pen.unlock(root)
            return None
        return self._take(root, claim, first=claim is None)

    def _live(self, root: _Root, claim: Claim, text: str | None, first_sight: bool) -> bool:
        if self.os_lock and lock_is_held(root.path):
            return True
        if claim.renewed_at is None or claim.lease_seconds is None:
            return False  # an older version's marker: no heartbeat to wait for
        if claim.stopped_at is not None:
            return False  # its owner stopped cleanly and said so
        now = self._monotonic()
        if text != root.last_text:
            root.last_text, root.unchanged_since = text, now
            # First sight: a heartbeat older than two leases by our clock stopped long ago.
            return not (first_sight and self._wall() - claim.renewed_at > 2 * claim.lease_seconds)
        return now - root.unchanged_since < claim.lease_seconds

    def _contend(self, root: _Root, owner: Claim) -> Change | None:
        changed = root.owner is None or (root.owner.journal_id, root.owner.run) != (
            owner.journal_id,
            owner.run,
        )
        root.owner = owner
        if changed:
            log.error(
                "another journal watches this folder: its files are held here, not uploaded "
                "twice; stop one of the two daemons (or give them different folders)",
                root=str(root.path),
                owner=owner.who(),
            )
        return None

    def _take(self, root: _Root, previous: Claim | None, *, first: bool) -> Change | None:
        foreign = previous is not None and (previous.journal_id, previous.run) != (
            self.journal_id,
            self.run,
        )
        taken = foreign and previous is not None and previous.journal_id != self.journal_id
        root.ours, root.owner = True, None
        self._settle(root)
        if previous is not None:
            # Taken from another journal: hand-overs come from it. Ours from an earlier start
            # (or a copy of this journal): whatever that start took over, it still holds.
            root.predecessor = previous.journal_id if taken else previous.took_over_from
        self._pen.lock(root)
        if not self._pen.write(root) or self.settle_seconds <= 0:
            # A folder we cannot write holds no claim to confirm (uploads go on, as said by
            # `_Pen.cannot_write`); `claim_settle_seconds = 0`: the operator says we are alone.
            root.confirm_at = None
            self._pen.write(root)
        if taken:
            root.taken_over_from = previous
            log.warning(
                "took over the watch folder: the journal that watched it stopped; files it "
                "left are held until it hands them over (started again) or they are approved",
                root=str(root.path),
                previous=previous.who() if previous else None,
                how=how_it_ended(previous),
            )
            return Change(root.path, took_over=previous)
        return Change(root.path, first=True) if first else None

    def _renew(self, root: _Root) -> Change | None:
        text = read_marker(root.path)
        claim = parse_marker(text) if text is not None else None
        if claim is not None and not self._is_ours(claim):
            return self._step_down(root, claim, text, "at a heartbeat")
        if text is None and _cannot_read(root):
            return None  # this beat skipped rather than written over what may be a peer's claim
        self._pen.write(root)
        return None

    def _confirm(self, root: _Root) -> Change | None:
        """A settle after our claim was written: read the marker again. Still ours: confirmed
        (rewritten without `claiming`, the first heartbeat), uploads may begin. Another claim:
        a peer renamed its claim after ours, and it is the owner; we contend."""
        if self._monotonic() < (root.confirm_at or 0.0):
            return None
        text = read_marker(root.path)
        claim = parse_marker(text) if text is not None else None
        if text is None and _cannot_read(root):
            self._settle(root)  # never written over what may be a peer's claim: look again
            return None
        if claim is None and self._pen.write(root):
            self._settle(root)  # our claim vanished (the marker deleted): written, settle again
            return None
        if claim is not None and not self._is_ours(claim):
            root.confirm_at = None
            log.warning(
                "another journal claimed this watch folder at the same moment, after this one: "
                "it uploads from the folder, this daemon holds its files there (nothing was "
                "uploaded from it here)",
                root=str(root.path),
                owner=claim.who(),
            )
            return self._step_down(root, claim, text, None)
        root.confirm_at = None
        self._pen.write(root)  # ours (or the folder refuses the marker): confirmed
        log.info(
            "claim on the watch folder confirmed: uploading from it",
            root=str(root.path),
            settle_seconds=self.settle_seconds,
        )
        return Change(root.path, confirmed=True)

    def _settle(self, root: _Root) -> None:
        root.confirm_at = self._monotonic() + self.settle_seconds
        root.confirm_by = self._wall() + self.settle_seconds

    def _is_ours(self, claim: Claim) -> bool:
        return (claim.journal_id, claim.run) == (self.journal_id, self.run)

    def _step_down(self, root: _Root, claim: Claim, text: str | None, when: str | None) -> Change:
        """The marker names another claim: it owns the folder; we contend, and never write the
        marker back."""
        root.ours, root.confirm_at, root.taken_over_from = False, None, None
        self._pen.unlock(root)
        root.owner, root.last_text, root.unchanged_since = claim, text, self._monotonic()
        if when is not None:
            log.error(
                "lost the claim on the watch folder to another journal (this daemon was "
                "stopped longer than its lease, or a peer renamed its claim late): its files "
                "are held here from now on",
                root=str(root.path),
                owner=claim.who(),
                noticed=when,
            )
        return Change(root.path, lost_to=claim)


class _Pen:
    """What writes a station's claim into a folder's marker, and holds the folder's lock."""

    def __init__(self, identity: Claim, wall: Callable[[], float], os_lock: bool) -> None:
        self.identity = identity  # journal, host, pid, run and lease: the parts that never change
        self._wall = wall
        self.os_lock = os_lock
        self._unwritable: set[Path] = set()
        self._beats = 0

    def write(self, root: _Root, *, stopped: bool = False) -> bool:
        """Rename our claim over the marker: False when the folder refuses it (said once)."""
        now = self._wall()
        self._beats += 1
        claim = replace(
            self.identity,
            renewed_at=now,
            stopped_at=now if stopped else None,
            beat=self._beats,
            took_over_from=root.predecessor,
            claiming=root.confirm_at is not None and not stopped,
        )
        target = root.path / MARKER
        temporary = root.path / f"{MARKER}.{self.identity.run}.tmp"
        try:
            # Private like the journal it names (DESIGN §3a): the station's id and journal path.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as marker:
                marker.write(format_marker(claim))
            os.replace(temporary, target)
        except OSError as exc:
            self.cannot_write(root.path, exc)
            return False
        self._unwritable.discard(root.path)
        return True

    def cannot_write(self, root: Path, exc: OSError) -> None:
        if root in self._unwritable:
            return  # said once until it works again
        self._unwritable.add(root)
        log.warning(
            "cannot write the journal's marker into the watch folder: uploads go on, but "
            "another daemon on this folder cannot see this one, and if this journal is ever "
            "lost the files already here will be uploaded again; let the daemon write the folder",
            root=str(root),
            error=exc.strerror or str(exc),
        )

    def lock(self, root: _Root) -> bool:
        """Take the folder's lock (kept while we own it): False when another process has it."""
        if root.lock_fd is not None or not self.os_lock:
            return True
        try:
            fd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return True  # no folder to lock: the marker write says what is wrong
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN)
        root.lock_fd = fd
        return True

    def unlock(self, root: _Root) -> None:
        if root.lock_fd is not None:
            os.close(root.lock_fd)
            root.lock_fd = None


def _cannot_read(root: _Root) -> bool:
    """The marker is there but cannot be read (an I/O error, a share's server gone): says so
    once. A marker that is simply gone is not this (it is written again)."""
    try:
        with (root.path / MARKER).open("rb") as marker:
            marker.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        if not root.unreadable:
            root.unreadable = True
            log.warning(
                "cannot read the watch folder's marker: it is not written over (it may hold "
                "another station's claim); a claim being confirmed waits, and it is read again",
                root=str(root.path),
                error=exc.strerror or str(exc),
            )
        return True
    root.unreadable = False
    return False


def how_it_ended(claim: Claim | None) -> str:
    """How the claim `claim` ended, as a clause (`it stopped cleanly`)."""
    if claim is None or claim.renewed_at is None:
        return "its marker was written by a version without leases"
    if claim.stopped_at is not None:
        return "it stopped cleanly"
    return f"its lease ({claim.lease_seconds:g} s) expired without a heartbeat"


def _by_folder(roots: list[Path]) -> list[list[Path]]:
    """Configured roots grouped by the folder they reach: a folder named twice (a symlink and
    its target) is one claim and one lock (a second `flock` on it from this process would fail
    against the first)."""
    groups: dict[object, list[Path]] = {}
    for root in roots:
        try:
            st = root.stat()
            key: object = (st.st_dev, st.st_ino)
        except OSError:
            key = root
        groups.setdefault(key, []).append(root)
    return list(groups.values())


def with_claims(
    statuses: list[dict[str, object]], claims: dict[Path, dict[str, object]]
) -> list[dict[str, object]]:
    """The watcher's root statuses with each root's claim: `claimed_by` (another journal's
    live claim: the root's `problem` says so) and `taken_over_from`."""
    merged = []
    for status in statuses:
        info = claims.get(Path(str(status["path"])), {"claimed_by": None, "taken_over_from": None})
        row = {**status, **info}
        owner = info.get("claimed_by")
        if isinstance(owner, dict):
            row["problem"] = (
                f"another journal watches this folder: journal {owner['journal_id']} "
                f"({owner['journal']}) on host {owner['host']}, pid {owner['pid']}; its files "
                "are held here, not uploaded twice. Stop one of the two daemons"
            )
        merged.append(row)
    return merged
