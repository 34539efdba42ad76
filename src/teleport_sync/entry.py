"""The process entry point: the `teleport-sync` console script and `python -m teleport_sync`.

Two costs belong to the process rather than to any command, and on a 1 GiB upload over a fast
link they are a tenth of the run (measured in `bench/`, see docs/BENCHMARKS.md):

- importing the dependency stack creates ~100,000 objects, none of them garbage, and the cyclic
  collector would walk them dozens of times meanwhile: it is paused during the import, and what
  was imported is frozen out of its sight afterwards;
- at exit the interpreter tears every module down one by one (~70 ms here), although the
  operating system is about to reclaim the memory anyway. Once the command has returned, its
  files are closed and no other thread is alive, the streams are flushed and the process ends at
  once. If anything is still running, the ordinary (slow, careful) exit is taken instead.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading


def run() -> None:
    gc.disable()
    try:
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    try:
        main()
    except SystemExit as done:
        code = exit_status(done.code)
    else:  # click's standalone mode always exits; keep the contract if that ever changes
        code = 0
    finish(code)


def exit_status(code: object) -> int:
    """What `sys.exit(code)` would make the exit status (and print, for a message)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def finish(code: int) -> None:
    """End the process with `code`: quickly when nothing is left to do, else the usual way."""
    if threading.active_count() > 1:
        sys.exit(code)
    logging.shutdown()  # what the atexit hook would do: flush and close log handlers
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe or stream: nothing more to say
        code = code or 1
    os._exit(code)
