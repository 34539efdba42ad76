"""What an input file is: its format (by extension), its identity and its capture name.

Identity is `(dev, inode, size, mtime_ns)` plus a cheap fingerprint (a hash of the size and the
first and last MiB), so a file rewritten in place with the same size and mtime is still noticed
at the ends, where zip directories and MP4 `moov` boxes live, without reading gigabytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..models import FileIdentity, InputDataFormat

FINGERPRINT_SPAN = 1 << 20
# A QuickTime .mov is a video: it is sent as its remux to MP4 (`remux`).
FORMATS_BY_SUFFIX = {
    ".zip": InputDataFormat.BULK_IMAGES,
    ".mp4": InputDataFormat.VIDEO,
    ".mov": InputDataFormat.VIDEO,
    ".qt": InputDataFormat.VIDEO,
}


class InputProblem(Exception):
    """The file cannot be uploaded as it is; the message names the file and the fix."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        # True when the problem may go away by itself or by a fix outside the file's bytes
        # (permissions, a file still being written); False when the bytes themselves are wrong.
        self.retryable = retryable


UNREADABLE = (
    "permission denied; let the teleport-sync user read it (chmod o+r, or "
    "setfacl -m u:teleport-sync:r); it is retried, and taken at once when its permissions change"
)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def special_kind(mode: int) -> str | None:
    """What a path that is not a regular file is, said plainly; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


def not_a_file(kind: str) -> str:
    return f"{kind}, not a file; only regular files are uploaded"


def not_a_capture(path: Path) -> str:
    """What a file of another type is told: one sentence for the daemon's `rejected` row,
    `check` and `upload`, so one problem reads the same wherever it is met."""
    suffix = path.suffix.lower()
    kind = f"a {suffix} file" if suffix else "a file without an extension"
    return f"{path}: not a capture (zip, mp4 or mov wanted): {kind}"


def input_format_for(path: Path) -> InputDataFormat:
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise InputProblem(not_a_capture(path))
    return fmt


def fingerprint(path: Path, size: int) -> str:
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_SPAN))
        if size > FINGERPRINT_SPAN:
            handle.seek(max(FINGERPRINT_SPAN, size - FINGERPRINT_SPAN))
            digest.update(handle.read(FINGERPRINT_SPAN))
    return digest.hexdigest()


def identify(path: Path) -> FileIdentity:
    """The identity of the file as it is now; raises InputProblem for what cannot be uploaded."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputProblem(f"{path}: no such file") from None
    except OSError as exc:
        raise InputProblem(f"{path}: cannot stat: {exc.strerror}", retryable=True) from None
    kind = special_kind(info.st_mode)
    if kind is not None:
        raise InputProblem(f"{path}: {not_a_file(kind)}")
    if info.st_size == 0:
        raise InputProblem(f"{path}: the file is empty (0 bytes); nothing to upload")
    if not os.access(path, os.R_OK):
        raise InputProblem(f"{path}: {UNREADABLE}", retryable=True)
    try:
        print_ = fingerprint(path, info.st_size)
    except OSError as exc:
        raise InputProblem(f"{path}: cannot read: {exc.strerror}", retryable=True) from None
    return FileIdentity(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, print_)


def same_file_as(path: Path, identity: FileIdentity, others: list[str]) -> str | None:
    """Another path in `others` that is this very file now (one inode reached by a hard link
    or a symlink): it is uploaded once, under the first path it was journaled as."""
    for other in others:
        if other == str(path):
            continue
        try:
            st = os.stat(other)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (identity.dev, identity.inode):
            return other
    return None


def capture_name(template: str, path: Path) -> str:
    name = template.format(
        name=path.name, stem=path.stem, parent=path.parent.name, ext=path.suffix.lstrip(".")
    )
    # The API takes UTF-8 text: bytes of a file name that are not UTF-8 become \x escapes.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
