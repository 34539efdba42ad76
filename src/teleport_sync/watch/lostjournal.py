"""A lost or replaced journal never silently doubles the account's captures.

Each watch root carries a hidden marker naming the journal that watches it (a random id kept
in that journal). A daemon that starts with a journal whose id differs from a root's marker is
looking at a folder some other journal watched (this one was deleted, emptied, replaced or
restored from a backup). Files already in that root that this journal has no row for may or may
not be on the account: the marker says only that another journal watched the folder, not which
files it uploaded. They are *held* (journaled as refused, with an error beginning
`phases.LOST_JOURNAL_HOLD` that says how to release them; their phase is `held`) instead of
uploaded again; files that arrive after the start are uploaded as usual. On a first start no
marker exists, so nothing is held. `teleport-sync approve PATH` releases a held file (after the
checks intake would make), as does touching it; `run --upload-existing` skips the hold for one
start.

The marker is also a claim with a lease (`claim`): a daemon whose journal finds another
journal's *live* claim on a folder does not upload from it; its files there are held the same
way, with a reason naming the other journal, its host and its pid (`hold_claimed`). Their
release waits until that claim is gone.

When a claim changes hands, the holds say what happened: the new owner's holds on files the old
owner may have uploaded name it as stopped (`took_over_reason`, not "which uploads it"); the old
owner, started again, gives up what it began there (`given_up_reason`) and hands the files over
(`handoff`), and the new owner releases them into its usual admission (`take_handoff`).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from ..commands import command
from ..config import WatchSettings
from ..inputs import InputProblem, capture_name, check_complete, identify, input_format_for
from ..journal import FileRecord, Journal, UploadState
from ..journal.states import LOST_JOURNAL_HOLD, is_lost_journal_hold
from ..logging import get_logger
from ..models import FileIdentity
from .candidates import ignore_reason
from .claim import MARKER, Claim, how_it_ended, looks_live, owner_above
from .handoff import HandOff, done_name, read_handoffs, remove_note, write_handoff, write_notes

__all__ = [
    "MARKER",
    "claimed_reason",
    "given_up_reason",
    "hold_claimed",
    "hold_existing",
    "journal_id",
    "release",
    "retell_claimed",
    "retell_taken",
    "take_handoff",
    "take_handoffs",
    "tell_done",
    "took_over_reason",
]

JOURNAL_ID_FACT = "journal-id"

log = get_logger("teleport_sync.daemon")


def journal_id(journal: Journal) -> str:
    """This journal's random id, made on first use and kept in it."""
    known = journal.fact(JOURNAL_ID_FACT)
    if known:
        return known
    made = secrets.token_hex(8)
    journal.set_fact(JOURNAL_ID_FACT, made)
    return made


def lost_reason(root: Path, path: Path) -> str:
    return (
        f"{LOST_JOURNAL_HOLD}this journal has no row for the file, and {root / MARKER} says "
        f"another journal watched {root} (this one was deleted, emptied, replaced or restored "
        "from a backup); whether that journal uploaded the file cannot be known here: check "
        f"`teleport-sync captures list`, then run `{command('approve', str(path))}` to upload it"
    )


def claimed_reason(root: Path, owner: Claim, path: Path) -> str:
    """Why a file in a folder another live journal watches is held here (the `held` reason)."""
    lease = f"{owner.lease_seconds:g} s" if owner.lease_seconds else "a lease"
    approve = command("approve", str(path))
    return (
        f"{LOST_JOURNAL_HOLD}{root} is watched by {owner.who()}, which uploads it; this daemon "
        "does not upload from a folder another live journal watches (one capture per file). "
        f"Stop one of the two daemons; if that one stops, this one takes the folder over {lease} "
        "later and files held meanwhile stay held (the other journal may have uploaded them): "
        f"check `teleport-sync captures list`, then run `{approve}`"
    )


def took_over_reason(root: Path, previous: Claim, path: Path) -> str:
    """Why a file the old owner of `root` may have uploaded is held by the journal that took
    the folder over from it (the `held` reason)."""
    return (
        f"{LOST_JOURNAL_HOLD}the file was in {root} while {previous.who()} watched it; that "
        f"daemon stopped ({how_it_ended(previous)}) and this journal took the folder over, so "
        "it may have uploaded the file, or begun to. If it starts again it hands over what it "
        "never completed, and this daemon uploads that; otherwise check `teleport-sync "
        f"captures list`, then run `{command('approve', str(path))}`"
    )


NOT_TAKEN_FROM_US = (
    "its marker does not say it took the folder over from this journal, so it takes no "
    "hand-over from it"
)
NOTE_NOT_WRITTEN = "the hand-over note could not be written into the folder: see this log"


def given_up_reason(
    root: Path,
    owner: Claim,
    path: Path,
    deleted: list[str],
    sent: str,
    not_handed: str | None = None,
) -> str:
    """Why a file this daemon began to upload is held here now that `owner` watches `root`
    (the `held` reason): what became of its capture, and who uploads the file. `sent`: how
    many parts had gone ("2 of 5 parts"); `not_handed`: why no hand-over note was left for
    the owner (None: one was)."""
    if deleted:
        captures = ", ".join(deleted)
        kept = (
            f"this daemon's unfinished capture {captures} ({sent} sent; never completed, so "
            "nothing was paid for it) was deleted"
        )
    else:
        kept = "this daemon had made no capture of it"
    if not_handed is None:
        return (
            f"{LOST_JOURNAL_HOLD}{root} is now watched by {owner.who()}, which took the "
            f"folder over while this daemon was stopped and uploads the file; {kept}, and the "
            "file was handed over to it. Nothing to do here (one capture per file)"
        )
    approve = command("approve", str(path))
    return (
        f"{LOST_JOURNAL_HOLD}{root} is now watched by {owner.who()}; {kept}. The file was not "
        f"handed over ({not_handed}), so that daemon holds it until it is approved there: "
        f"check `teleport-sync captures list`, then run `{approve}` on that station"
    )


def retell_claimed(journal: Journal, roots: tuple[Path, ...], previous: Claim) -> int:
    """The folder reached by `roots` was taken over from `previous`: holds that named it as
    the live owner "which uploads it" say what is true now (`took_over_reason`)."""
    return _retell(
        journal,
        roots,
        lambda root: tuple(  # `claimed_reason`'s and `given_up_reason`'s openings
            f"{LOST_JOURNAL_HOLD}{root} is {now}watched by journal {previous.journal_id} ("
            for now in ("", "now ")
        ),
        lambda root, path: took_over_reason(root, previous, path),
    )


def retell_taken(journal: Journal, roots: tuple[Path, ...], owner: Claim) -> int:
    """This journal took the folder reached by `roots` over, then lost it to `owner` (a peer
    that claimed it at the same moment, or later): holds that say this journal took the
    folder over name the folder's owner now (`claimed_reason`)."""
    return _retell(
        journal,
        roots,
        lambda root: (f"{LOST_JOURNAL_HOLD}the file was in {root} while ",),  # took_over_reason
        lambda root, path: claimed_reason(root, owner, path),
    )


def _retell(
    journal: Journal,
    roots: tuple[Path, ...],
    openings: Callable[[Path], tuple[str, ...]],
    reason: Callable[[Path, Path], str],
) -> int:
    """Holds in a root of `roots` whose reason opens with one of `openings(root)` get
    `reason(root, path)` instead; how many."""
    retold = 0
    for record in journal.all_files():
        if not is_lost_journal_hold(record.upload_state, record.error):
            continue
        path = Path(record.path)
        for root in roots:
            if (record.error or "").startswith(openings(root)):
                journal.mark_rejected(record.id, reason(root, path))
                retold += 1
                break
    return retold


def hold_existing(
    journal: Journal,
    root: Path,
    settings: WatchSettings,
    template: str,
    previous: Claim | None = None,
) -> int:
    """Hold the files already in `root`, which another journal watched (`previous`: its
    claim, taken over; or written by a version without leases). Returns how many were held."""
    stopped = (
        previous is not None
        and previous.renewed_at is not None
        and previous.journal != str(journal.path)  # else this very journal was replaced
    )
    held = _hold_files(
        journal,
        root,
        settings,
        template,
        lambda path: (
            took_over_reason(root, previous, path)
            if stopped and previous is not None
            else lost_reason(root, path)
        ),
    )
    if held:
        log.warning("files held: the journal is new to this folder", root=str(root), held=held)
    return held


def hold_claimed(
    journal: Journal, root: Path, owner: Claim, settings: WatchSettings, template: str
) -> int:
    """Hold what this journal would upload from `root`, which another live journal watches:
    the files it has no row for, and its own rows there whose capture is not begun. When the
    owner took the folder over from this journal, its rows are left to the upload workers
    instead, which give each up and hand it over (`FolderClaims.give_up`): one worker per file,
    so a file a worker is uploading right now is never handed over under it."""
    held = _hold_files(
        journal, root, settings, template, lambda path: claimed_reason(root, owner, path)
    )
    if owner.took_over_from == journal_id(journal):
        return held
    for record in journal.all_files():
        path = Path(record.path)
        waiting = record.upload_state in (UploadState.PENDING, UploadState.FAILED)
        begun = record.eid is not None or record.intent_nonce is not None  # for the workers
        if waiting and not begun and path.is_relative_to(root):
            why = claimed_reason(root, owner, path)
            journal.reject(record.path, record.identity, record.input_data_format, record.name, why)
            held += 1
    return held


def hand_over(journal: Journal, root: Path, owner: Claim, record: FileRecord, said: str) -> bool:
    """Leave `owner`, which took `root` over from this journal, a note handing it the file
    of `record` (whose capture here is deleted or was never made: `said` says which); False
    when the note cannot be written (the owner then holds the file until approved)."""
    path = Path(record.path)
    note = HandOff(
        sender=journal_id(journal),
        receiver=owner.journal_id,
        relative=os.fsencode(path.relative_to(root)),
        size=record.identity.size,
        mtime_ns=record.identity.mtime_ns,
        said=f"{journal.path} {said}",
    )
    return write_handoff(root, note)


def tell_done(journal: Journal, root: Path, owner: Claim, *, only: int | None = None) -> int:
    """Tell `owner`, which took `root` over from this journal, which files there this journal
    completed, so its holds on them say so: all in one note, or the row `only` in a note of its
    own (a completion found after the list was written). How many."""
    me = journal_id(journal)
    notes = [
        HandOff(
            sender=me,
            receiver=owner.journal_id,
            relative=os.fsencode(Path(record.path).relative_to(root)),
            size=record.identity.size,
            mtime_ns=record.identity.mtime_ns,
            said=str(journal.path),
            done_as=record.eid,
        )
        for record in ([journal.get(only)] if only is not None else journal.all_files())
        if record.upload_state == UploadState.UPLOADED
        and record.eid
        and Path(record.path).is_relative_to(root)
    ]
    if not notes:
        return 0
    if only is not None:
        return int(write_handoff(root, notes[0]))
    return len(notes) if write_notes(root, done_name(me), notes) else 0


def done_reason(root: Path, note: HandOff, path: Path) -> str:
    """Why a file the journal this one took `root` over from completed stays held here."""
    return (
        f"{LOST_JOURNAL_HOLD}journal {note.sender} ({note.said}), which watched {root} before "
        f"this journal took it over, completed this file as capture {note.done_as} (it said so "
        "when it started again): nothing to do here; its models are that station's. "
        f"`{command('approve', str(path))}` would upload it again as a second, paid capture; "
        f"`{command('forget', str(path))}` drops this row"
    )


def take_handoffs(
    journal: Journal, roots: tuple[Path, ...], predecessor: str
) -> list[tuple[Path, str]]:
    """In a folder this journal owns (reached by `roots`), taken over from the journal
    `predecessor` ("" when not taken over): release the files that journal handed over to this
    one (`take_handoff`), and remove every note, acted on or addressed to no one who can act on
    it any more. (path released, sender) of each release."""
    me = journal_id(journal)
    released = []
    for note_path, notes in read_handoffs(roots[0]):
        for note in notes:
            if predecessor and (note.sender, note.receiver) == (predecessor, me):
                path = take_handoff(journal, roots, note)
                if path is not None:
                    released.append((path, note.sender))
        remove_note(note_path)
    return released


def take_handoff(journal: Journal, roots: tuple[Path, ...], note: HandOff) -> Path | None:
    """The journal this one took a folder over from handed a file over (`handoff`): its hold
    here is released into the usual admission (pre-flight, duplicates, budget), after
    intake's checks. The path released, or None (no such hold, or another version of it; or a
    file that journal completed: its hold then says so, and stays)."""
    relative = Path(os.fsdecode(note.relative))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None  # a note names files below the folder, nothing else
    for root in roots:
        path = root / relative
        record = journal.by_path(str(path))
        if record is None or not is_lost_journal_hold(record.upload_state, record.error):
            continue
        try:
            st = path.stat()
            if (st.st_size, st.st_mtime_ns) != (note.size, note.mtime_ns):
                return None  # not the version given up: the hold stands, and says why
            if note.done_as:
                journal.mark_rejected(record.id, done_reason(root, note, path))
                return None
            completeness = check_complete(path)
            identity = identify(path)
        except (InputProblem, OSError):
            return None
        if not completeness.complete:
            return None
        why = f"handed over by journal {note.sender}, which watched the folder before: {note.said}"
        journal.restart(record.id, identity, record.input_data_format, record.name, why)
        return path
    return None


def _hold_files(
    journal: Journal,
    root: Path,
    settings: WatchSettings,
    template: str,
    why: Callable[[Path], str],
) -> int:
    known = journal.quick_index()
    held = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if settings.recursive else []
        for name in filenames:
            path = Path(dirpath) / name
            if ignore_reason(path, root, settings) is not None or str(path) in known:
                continue
            try:
                fmt = input_format_for(path)
                st = path.stat()
            except (InputProblem, OSError):
                continue
            identity = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "")
            journal.reject(str(path), identity, fmt.value, capture_name(template, path), why(path))
            held += 1
    return held


def release(journal: Journal, record: FileRecord) -> str | None:
    """Release a lost-journal hold (`approve`): None when the file is queued, else why not.

    The hold was placed before intake looked at the file, so intake's checks run here first: a
    file that turns out broken is refused with its real reason instead of uploaded.
    """
    path = Path(record.path)
    claimed = owner_above(path)
    if claimed is not None and claimed[1].journal_id != journal_id(journal):
        folder, owner = claimed
        if looks_live(owner, folder, time.time()):
            return (
                f"{path}: {folder} is watched by {owner.who()}, which uploads it; stop that "
                "daemon first (this one takes the folder over once that claim's lease expires)"
            )
    try:
        completeness = check_complete(path)
        identity = identify(path)
    except InputProblem as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if not completeness.complete:
        why = f"{path}: {completeness.reason}"
        journal.reject(record.path, identity, record.input_data_format, record.name, why)
        return why
    journal.restart(
        record.id, identity, record.input_data_format, record.name, "released by approve"
    )
    journal.approve(record.id)  # bumps the control generation: a running daemon queues it
    return None
