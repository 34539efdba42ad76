"""Which file system holds a path, from /proc/self/mountinfo; is it a network one?

inotify sees only changes made through this machine's kernel: a file another machine writes to
an NFS or SMB share, or one a FUSE daemon makes appear, raises no event here. Such watch roots
are polled instead. Pure apart from reading the mount table (injectable for tests).
"""

from __future__ import annotations

from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre"}
)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of every line; malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mounts.append((_unescape(fields[4]), right.split()[0]))
    return mounts


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the file system `path` lives on (the longest matching mount point)."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    resolved = str(path.resolve())
    best: tuple[int, str] | None = None
    for point, fstype in parse_mountinfo(mountinfo):
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def is_network_fs(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_TYPES or fstype.startswith("fuse."))
