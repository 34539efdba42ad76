"""Files and folders only their owner can read, whatever the umask (DESIGN §3a).

The journal (paths, capture ids, share ids, viewer links, queued notifications), its WAL and
SHM, the writer lock and downloaded models are created 0600, in folders created 0700, as XDG
asks of a state directory. Folders that already exist are the user's and are left as they are;
files of ours that others can read are tightened.

Pure helper: imports nothing of ours.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dirs(folder: Path) -> None:
    """Make `folder` and any missing folder above it, each 0700 (never chmods one that was
    there already)."""
    missing: list[Path] = []
    here = folder
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # made meanwhile by another process: it is theirs as it is
        os.chmod(path, PRIVATE_DIR)  # the umask may have taken bits the mode asked for


def private_file(path: Path) -> None:
    """Create `path` empty as 0600 if it is missing; tighten it to 0600 if it is ours and
    group or others may read it.

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock this process holds on it, and SQLite's locks on an open journal are such locks."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        tighten_path(path)
        return
    os.close(fd)


def tighten(fd: int) -> None:
    """Drop group and other bits of an open file of ours."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)


def tighten_path(path: Path) -> None:
    """`tighten` by path, without opening the file (see `private_file`): for the journal and
    the -wal and -shm SQLite makes beside it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
