"""The `teleport-sync` command: one module per command group, thin over the packages below.

`app` holds the group, its global options and the shared error handling; each command group
registers its commands on it: `upload` (with `follow` and `progress`), `status` (status,
health), `captures` (captures, download), `control` (pause, resume, approve, forget),
`check` (pre-flight by hand), `setup` (config check, notify test, emulator, demo), `run` (the
daemon). Imports anything below it.
"""

from . import captures, check, control, run, setup, status, upload  # noqa: F401 (registers)
from .app import main

__all__ = ["main"]
