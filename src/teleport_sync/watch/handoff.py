"""Hand-overs: a journal that lost a folder tells the folder's new owner which files it never
completed, so the owner uploads them instead of holding them for `approve`.

The case: daemon A owns a folder and is killed (`kill -9`, a power cut) with a file half
uploaded; daemon B, with its own journal, takes the folder over once A's lease expires. B cannot
know whether A completed that file (A's journal is A's), so it holds the file. When A starts
again it finds B's live claim, and B's marker says B took the folder over from A
(`took_over_from`). A then ends its unfinished uploads there without completing them (their
captures deleted: never completed, nothing paid) and writes one note per file into the
folder's hidden `.teleport-sync-handoff/` folder, addressed to B. B, at its next heartbeat, reads
the notes addressed to it *from the journal it took the folder over from*, releases those holds
(the file then goes through B's usual admission: pre-flight, duplicates, budget) and deletes the
notes. Notes for anyone else are stale (their owner is gone) and are deleted by the owner.

A also says which files there it *did* complete (`done_as`: the capture), all in one note: B's
holds on those then say so (nothing to do; `approve` would pay a second capture) instead of
"it may have uploaded the file". They stay held: the capture and its models are A's.

Why this never pays twice: A writes a note only after its own capture is gone (or was never
made) and while B's claim is live, so A uploads nothing from that folder from then on; B acts on
a note only while it owns the folder. A file A had completed gets no note: B keeps holding it.

A note is one small JSON file, written to a temporary name and renamed (a reader never sees
half of one), 0600 like the marker. Its path below the folder is kept as the bytes the OS gave
(hex), so any file name survives.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..logging import get_logger

HANDOFF_DIR = ".teleport-sync-handoff"

log = get_logger("teleport_sync.daemon")


@dataclass(frozen=True)
class HandOff:
    """One file a journal gives up to the folder's owner."""

    sender: str  # the journal id giving the file up
    receiver: str  # the journal id of the owner it is addressed to
    relative: bytes  # the file's path below the watch folder, as the OS spells it
    size: int  # the version given up: it must still be the file on disk
    mtime_ns: int
    said: str  # the sender's sentence (what it did with its capture), for the owner's journal
    done_as: str = ""  # not given up: the sender completed this version as this capture

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.sender,
            "to": self.receiver,
            "path": self.relative.hex(),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "said": self.said,
            "done_as": self.done_as,
        }


def note_name(sender: str, relative: bytes) -> str:
    """One note per (sender, file): a second hand-over of the same file replaces the first."""
    return f"{sender}.{hashlib.sha256(relative).hexdigest()[:24]}.json"


def done_name(sender: str) -> str:
    """The one note listing what a sender completed in a folder (rewritten at each start)."""
    return f"{sender}.done.json"


def write_handoff(root: Path, note: HandOff) -> bool:
    """Leave `note` in `root` for its owner; False (logged) when the folder cannot be written."""
    return write_notes(root, note_name(note.sender, note.relative), [note])


def write_notes(root: Path, name: str, notes: list[HandOff]) -> bool:
    """Leave `notes` in `root` as one file `name`; False (logged) when it cannot be written."""
    folder = root / HANDOFF_DIR
    target = folder / name
    temporary = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"notes": [note.to_json() for note in notes]}, out)
        os.replace(temporary, target)
    except OSError as exc:
        log.warning(
            "cannot leave a hand-over note in the watch folder: the folder's owner keeps the "
            "file held until it is approved there",
            root=str(root),
            error=exc.strerror or str(exc),
        )
        return False
    return True


def read_handoffs(root: Path) -> list[tuple[Path, list[HandOff]]]:
    """Every note file in `root` with what it says (nothing, when it cannot be read as
    notes), oldest first."""
    folder = root / HANDOFF_DIR
    try:
        entries = sorted(
            (e for e in os.scandir(folder) if e.name.endswith(".json") and e.is_file()),
            key=lambda e: e.stat().st_mtime_ns,
        )
    except OSError:
        return []  # no notes (the usual case: one stat per heartbeat)
    return [(Path(entry.path), _parse(Path(entry.path))) for entry in entries]


MAX_NOTE_BYTES = 64 * 1024 * 1024  # a done list of a very large folder; nothing bigger is read


def _parse(path: Path) -> list[HandOff]:
    try:
        if path.stat().st_size > MAX_NOTE_BYTES:
            return []
        entries = json.loads(path.read_bytes())["notes"]
        return [
            HandOff(
                sender=str(raw["from"]),
                receiver=str(raw["to"]),
                relative=bytes.fromhex(str(raw["path"])),
                size=int(raw["size"]),
                mtime_ns=int(raw["mtime_ns"]),
                said=str(raw.get("said", ""))[:2000],
                done_as=str(raw.get("done_as", ""))[:64],
            )
            for raw in entries
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def remove_note(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning(
            "cannot remove a hand-over note", note=str(path), error=exc.strerror or str(exc)
        )
