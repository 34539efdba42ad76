"""The command lines teleport-sync tells its operator to run, with the file's own path in them,
quoted for a shell, ready to paste (`teleport-sync approve /srv/inbox/scan.zip`, never `PATH`).

Pure helper: imports nothing of ours.
"""

from __future__ import annotations

import os
import shlex


def command(name: str, path: str) -> str:
    """`teleport-sync NAME PATH` with the file's own path (a name that is not UTF-8 as bash's
    $'...' with its bytes escaped, so the same bytes reach the command)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        plain = {b for b in range(32, 127)} - {ord("'"), ord("\\")}
        escaped = "".join(chr(b) if b in plain else f"\\x{b:02x}" for b in raw)
        return f"teleport-sync {name} $'{escaped}'"
    return f"teleport-sync {name} {shlex.quote(path)}"
