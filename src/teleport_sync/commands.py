"""The command lines teleport-sync tells its operator to run, with the file's own path in them,
quoted for a shell, ready to paste (`teleport-sync approve /srv/inbox/scan.zip`, never `PATH`).

Pure helper: imports nothing of ours.
"""

from __future__ import annotations

import os
import re
import shlex

# Characters a terminal obeys rather than shows (as `logging.printable` escapes them): a name
# holding one is written with its bytes escaped, never raw in quotes.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def command(name: str, path: str) -> str:
    """`teleport-sync NAME PATH` with the file's own path (a name that is not UTF-8, or holds
    control characters, as bash's $'...' with its bytes escaped, so the same bytes reach the
    command and nothing in the hint acts on the terminal that shows it)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return f"teleport-sync {name} {_escaped_bytes(path)}"
    if _CONTROLS.search(path):
        return f"teleport-sync {name} {_escaped_bytes(path)}"
    return f"teleport-sync {name} {shlex.quote(path)}"


def _escaped_bytes(path: str) -> str:
    raw = os.fsencode(path)
    plain = {b for b in range(32, 127)} - {ord("'"), ord("\\")}
    return "$'" + "".join(chr(b) if b in plain else f"\\x{b:02x}" for b in raw) + "'"
