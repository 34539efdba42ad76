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
from ..journal.states import LOST_JOURNAL_HOLD
from ..logging import get_logger
from ..models import FileIdentity
from .candidates import ignore_reason
from .claim import MARKER, Claim, looks_live, owner_above

__all__ = ["MARKER", "claimed_reason", "hold_claimed", "hold_existing", "journal_id", "release"]

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


def hold_existing(journal: Journal, root: Path, settings: WatchSettings, template: str) -> int:
    """Hold the files already in `root`, which another journal watched (its claim is taken
    over, or was written by a version without leases). Returns how many were held."""
    held = _hold_files(journal, root, settings, template, lambda path: lost_reason(root, path))
    if held:
        log.warning("files held: the journal is new to this folder", root=str(root), held=held)
    return held


def hold_claimed(
    journal: Journal, root: Path, owner: Claim, settings: WatchSettings, template: str
) -> int:
    """Hold what this journal would upload from `root`, which another live journal watches:
    the files it has no row for, and its own rows there whose capture is not made yet."""
    held = _hold_files(
        journal, root, settings, template, lambda path: claimed_reason(root, owner, path)
    )
    for record in journal.all_files():
        path = Path(record.path)
        waiting = record.upload_state in (UploadState.PENDING, UploadState.FAILED)
        if waiting and record.eid is None and path.is_relative_to(root):
            why = claimed_reason(root, owner, path)
            journal.reject(record.path, record.identity, record.input_data_format, record.name, why)
            held += 1
    return held


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
