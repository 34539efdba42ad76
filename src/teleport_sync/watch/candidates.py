"""Which paths under a watch root are candidates for upload: the rule, without the watcher.

Kept apart from `watcher` (which imports watchdog) because one-shot commands such as `upload`
apply the same rule to the paths they are given, and should not pay for the observer stack.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from ..config import WatchSettings

# Names that editors, browsers and copy tools give files they are still writing.
TEMPORARY_PATTERNS = ("*.part", "*.tmp", "*.crdownload", "~$*", ".~*")
NOT_INCLUDED = "not an included type"


def ignore_reason(path: Path, root: Path, settings: WatchSettings) -> str | None:
    """Why `path` is not a candidate, or None if it is one."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return "outside the watch root"
    if any(part.startswith(".") for part in relative.parts):
        return "hidden"
    name = path.name
    if any(fnmatch.fnmatch(name, pattern) for pattern in TEMPORARY_PATTERNS):
        return "temporary"
    if not any(fnmatch.fnmatch(name.lower(), p.lower()) for p in settings.include):
        return NOT_INCLUDED
    if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(str(relative), p) for p in settings.exclude):
        return "excluded"
    return None
