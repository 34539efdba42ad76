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
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..config import WatchSettings
from ..inputs import InputProblem, capture_name, check_complete, identify, input_format_for
from ..journal import FileRecord, Journal
from ..journal.states import LOST_JOURNAL_HOLD
from ..logging import get_logger
from ..models import FileIdentity
from .candidates import ignore_reason

MARKER = ".teleport-sync-journal"
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


def _marker_id(root: Path) -> str | None:
    try:
        return (root / MARKER).read_text(encoding="utf-8").split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None


def hold_existing(journal: Journal, settings: WatchSettings, name_template: str) -> int:
    """Hold the files already in roots watched by another journal; mark every root as ours.

    Returns how many files were held.
    """
    ours = journal_id(journal)
    held = 0
    for root in settings.paths:
        marked = _marker_id(root)
        if marked is not None and marked != ours:
            held += _hold_root(journal, root, settings, name_template)
        if marked != ours:
            _mark(root, ours, journal.path)
    return held


def _hold_root(journal: Journal, root: Path, settings: WatchSettings, template: str) -> int:
    why = (
        f"{LOST_JOURNAL_HOLD}this journal has no row for the file, and {root / MARKER} says "
        f"another journal watched {root} (this one was deleted, emptied, replaced or restored "
        "from a backup); whether that journal uploaded the file cannot be known here: check "
        "`teleport-sync captures list`, then run `teleport-sync approve PATH` to upload it"
    )
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
            journal.reject(str(path), identity, fmt.value, capture_name(template, path), why)
            held += 1
    if held:
        log.warning("files held: the journal is new to this folder", root=str(root), held=held)
    return held


def release(journal: Journal, record: FileRecord) -> str | None:
    """Release a lost-journal hold (`approve`): None when the file is queued, else why not.

    The hold was placed before intake looked at the file, so intake's checks run here first: a
    file that turns out broken is refused with its real reason instead of uploaded.
    """
    path = Path(record.path)
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


def _mark(root: Path, ours: str, journal_path: Path) -> None:
    try:
        # Private like the journal it names (DESIGN §3a): the station's id and journal path.
        fd = os.open(root / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as marker:
            marker.write(f"{ours}\n{journal_path}\n")
    except OSError as exc:
        log.warning(
            "cannot write the journal's marker into the watch folder: uploads go on, but if this "
            "journal is ever lost, the files already here will be uploaded again (a new journal "
            "could not tell it is not a first start); let the daemon write the folder to avoid it",
            root=str(root),
            error=exc.strerror or str(exc),
        )
