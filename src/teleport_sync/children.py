"""Child processes that end with the process that started them.

Native work (the `.mov` remux through FFmpeg's libraries, COLMAP's mapper for the pose check)
runs in a child so that a crash or abort there cannot take the daemon down. The reverse must
hold too: a daemon killed with SIGKILL (from a terminal, or a container engine that signals only
its first process) must not leave a child writing into the journal's work folder, where the
restarted daemon starts the same work again into the same files. Linux's parent-death signal
says exactly that; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl  # type: ignore[no-any-return]


# Resolved once, in the parent: after a fork in a threaded process only async-signal-safe work
# belongs in the child, and looking a symbol up is not that; calling it is.
_PRCTL = _prctl()


def dies_with_parent(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess`: the child gets SIGKILL when its parent dies (and exits
    at once if the parent died before it could ask), then runs `then` (e.g. a memory limit).

    The signal follows the *thread* that started the child; the callers here wait for their
    child on that same thread, so the two end together.
    """
    parent = os.getpid()

    def in_child() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died between fork and prctl
                os._exit(1)
        if then is not None:
            then()

    return in_child
