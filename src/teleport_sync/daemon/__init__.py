"""The daemon (`teleport-sync run`): the composition root (`root.Daemon`) and its parts: the
client, journal and uploader built from settings (`compose`), settled files taken in (`intake`),
the queue of file ids (`queue`), the upload workers (`workers`), renames and each ended
capture's actions (`finishing`), signals and reloads (`signals`, `reload`), health facts and
gauges (`keeper`), the web console's host (`consolehost`) and sd_notify (`sdnotify`).

May import every package below it (engine, watch, results, events, status, control, ...);
only the CLI imports it. `Daemon` is loaded on first use, so one-shot commands that only need
`compose` do not pay for the daemon's threads and servers.
"""

from typing import Any

_ROOT_NAMES = {
    "ACTIONS_RETRY_SECONDS",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "ROOT_CHECK_SECONDS",
    "Daemon",
    "file_retry_policy",
    "start_console",
}


def __getattr__(name: str) -> Any:
    if name in _ROOT_NAMES:
        from . import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
