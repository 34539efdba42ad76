"""A lost or replaced journal never silently doubles the account's captures.

Each watch root carries a hidden marker naming the journal that watches it (a random id kept
in that journal). A daemon that starts with a journal whose id differs from a root's marker is
looking at a folder some other journal watched, one that was deleted, emptied or replaced: the
files already in that root may be on the account already. They are *held* (journaled as
refused, with a sentence saying how to release them) instead of uploaded again; files that
arrive after the start are uploaded as usual. On a first start no marker exists, so nothing is
held. `teleport-sync run --upload-existing` skips the hold for one start; touching a held file
releases it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .config import WatchSettings
from .inputs import InputProblem, capture_name, input_format_for
from .journal import Journal
from .logging import get_logger
from .models import FileIdentity
from .watcher import ignore_reason

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
        f"held: {root} was watched with another journal ({root / MARKER} names it) that is gone "
        "or was replaced, so this file may already be on the account; check `teleport-sync "
        "captures list`, then touch the file to upload it (or start once with `teleport-sync "
        "run --upload-existing`)"
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


def _mark(root: Path, ours: str, journal_path: Path) -> None:
    try:
        (root / MARKER).write_text(f"{ours}\n{journal_path}\n", encoding="utf-8")
    except OSError as exc:
        log.warning(
            "cannot mark the watch root; a lost journal could not be told from a first start",
            root=str(root),
            error=exc.strerror or str(exc),
        )
