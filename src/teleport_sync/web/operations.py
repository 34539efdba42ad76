"""The console's actions on files: the one place that changes anything.

Each takes the daemon link (see `link.DaemonLink`) and a journal file id and returns a sentence
for the page. Pause, resume and approve are journal writes, as `teleport-sync pause` makes them;
the running daemon notices them by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import control
from ..control import PAUSE_ALL
from ..journal.states import UploadState
from ..status.view import is_finished
from .link import DaemonLink


class ActionRefused(Exception):
    """The action does not apply to this file now; the message says why."""


def retry_now(link: DaemonLink, file_id: int) -> str:
    """A failed file is tried again at once instead of at its scheduled time."""
    record = link.journal.get(file_id)
    if record.upload_state != UploadState.FAILED:
        raise ActionRefused(f"{record.path} is not waiting for a retry ({record.upload_state})")
    link.journal.set_next_attempt(file_id, None)
    link.retry_now(file_id)
    return f"retrying {record.path} now"


def forget(link: DaemonLink, file_id: int, row: dict[str, Any]) -> str:
    """Drop a finished row, as `teleport-sync forget` does and by the same rule: never one still
    in flight, nor a file still in a watch folder (forgotten, it would look new at the next scan
    and be uploaded again)."""
    path = link.journal.get(file_id).path
    if not is_finished(row):
        raise ActionRefused(f"{path} is {row['phase']}; only finished rows can be forgotten")
    roots = [root.absolute() for root in link.settings.watch.paths]
    if Path(path).exists() and any(Path(path).is_relative_to(root) for root in roots):
        raise ActionRefused(
            f"{path} is still in a watch folder: forgotten, it would be uploaded again; move it "
            "out first (or set [actions] done_dir)"
        )
    link.journal.forget_paths([path])
    return f"forgot {path} (the capture on the account is kept)"


def pause(link: DaemonLink, file_id: int | None) -> str:
    """Start no new part (of this file, or of any): journaled, so a restart keeps it paused."""
    paths = [PAUSE_ALL] if file_id is None else [link.journal.get(file_id).path]
    link.journal.set_paused(paths, True)
    return "paused all uploads" if file_id is None else f"paused {paths[0]}"


def resume(link: DaemonLink, file_id: int | None) -> str:
    paths = [PAUSE_ALL] if file_id is None else [link.journal.get(file_id).path]
    link.journal.set_paused(paths, False)
    return "resumed all uploads" if file_id is None else f"resumed {paths[0]}"


def approve(link: DaemonLink, file_id: int) -> str:
    """Release a held file (as `teleport-sync approve PATH`)."""
    path = link.journal.get(file_id).path
    approved, not_held = control.approve(link.journal, [path])
    if not approved:
        problems = [sentence for sentence in not_held if sentence.startswith("not released")]
        raise ActionRefused(problems[0] if problems else f"{path} is not held")
    return f"approved {path}"
