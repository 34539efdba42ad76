"""The console's actions on files: the one place that changes anything.

Each takes the daemon link (see `facade.DaemonLink`) and a journal file id and returns a sentence
for the page. Pause, resume and approve belong to the operator-control work; until the daemon
offers them they answer `Unavailable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .facade import DaemonLink

FORGETTABLE = ("uploaded", "rejected")
CONTROLS = ("pause", "resume", "approve")


class ActionRefused(Exception):
    """The action does not apply to this file now; the message says why."""


class Unavailable(ActionRefused):
    """This build of the daemon cannot do that yet."""


def retry_now(link: DaemonLink, file_id: int) -> str:
    """A failed file is tried again at once instead of at its scheduled time."""
    record = link.journal.get(file_id)
    if record.upload_state != "failed":
        raise ActionRefused(f"{record.path} is not waiting for a retry ({record.upload_state})")
    link.journal.set_next_attempt(file_id, None)
    link.retry_now(file_id)
    return f"retrying {record.path} now"


def forget(link: DaemonLink, file_id: int) -> str:
    """Drop a finished row (processed by Teleport, or rejected): never one still in flight."""
    record = link.journal.get(file_id)
    if record.upload_state not in FORGETTABLE:
        raise ActionRefused(
            f"{record.path} is {record.upload_state}; only finished rows can be forgotten"
        )
    if record.upload_state == "uploaded" and (record.capture_state or "").upper() not in (
        "READY",
        "FAILED",
        "ERROR",
    ):
        raise ActionRefused(f"{record.path} is still being processed by Teleport")
    link.journal.delete_file(file_id, "forgotten from the web console")
    return f"forgot {record.path} (the capture on the account is kept)"


def _control(link: DaemonLink, name: str) -> object:
    method = getattr(link, name, None)
    if method is None:
        raise Unavailable(f"{name} is not available in this version of the daemon")
    return method


def pause(link: DaemonLink, file_id: int | None) -> str:
    paths = [] if file_id is None else [link.journal.get(file_id).path]
    _control(link, "pause")(paths)  # type: ignore[operator]
    return f"paused {paths[0]}" if paths else "paused all uploads"


def resume(link: DaemonLink, file_id: int | None) -> str:
    paths = [] if file_id is None else [link.journal.get(file_id).path]
    _control(link, "resume")(paths)  # type: ignore[operator]
    return f"resumed {paths[0]}" if paths else "resumed all uploads"


def approve(link: DaemonLink, file_id: int) -> str:
    path = link.journal.get(file_id).path
    _control(link, "approve")([path])  # type: ignore[operator]
    return f"approved {path}"
