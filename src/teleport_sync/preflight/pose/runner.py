"""The parent's side of the pose check: a child process with a time and a memory limit.

pycolmap is native code: an abort, a segfault or a runaway allocation in it must cost only
its own process. The child (`child`) gets a working folder, a request file and its limits:
its address space is bounded (RLIMIT_AS) and its whole process group is killed at the time
limit. Whatever happens, the caller gets a `PoseRun` that says what became of the check;
nothing here raises for the check's own failures.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...children import dies_with_parent
from ...config import PreflightSettings

POSE_INSTALL_HINT = "pip install 'teleport-sync[pose]'"
# Time the child gets past the limit to write its result before it is killed.
GRACE_SECONDS = 5.0
STDERR_KEPT = 600
# What a child out of address space leaves behind: C++'s and Python's allocation errors,
# OpenBLAS's, and pycolmap's "Cannot import the C++ backend" (its libraries did not fit).
OUT_OF_MEMORY = (
    "bad_alloc",
    "MemoryError",
    "Memory allocation",
    "Cannot allocate memory",
    "Cannot import the C++ backend",
)
# Under this limit a check that died most likely died of it: 16 frames of 360x270 on this
# 2-core machine crashed at 900 MiB (SIGSEGV, OpenBLAS or an abort: the limit, never named)
# and ran at 1100; at 300 pycolmap could not even be imported.
LEAST_MEMORY_MIB = 1024

Status = Literal["done", "failed", "crashed", "timeout", "missing"]


@dataclass(frozen=True)
class PoseRun:
    status: Status
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None  # why it did not finish (the signal, the error, the fix)


def pose_available(find: Callable[[str], object | None] = importlib.util.find_spec) -> str | None:
    """None when pycolmap can be imported here; else why not, and the fix."""
    if find("pycolmap") is None:
        return (
            "the pose check is not installed (pycolmap cannot be found; it has CPU wheels for "
            f"x86-64 Linux, macOS and Windows only): {POSE_INSTALL_HINT}"
        )
    return None


def child_command(request: Path, result: Path) -> list[str]:
    return [sys.executable, "-m", "teleport_sync.preflight.pose.child", str(request), str(result)]


def run_pose(
    path: Path,
    kind: str,
    settings: PreflightSettings,
    *,
    command: Callable[[Path, Path], Sequence[str]] = child_command,
    available: Callable[[], str | None] = pose_available,
    threads: int | None = None,
) -> PoseRun:
    """Run the pose check of the .zip (`kind` "images") or .mp4 ("video") at `path`."""
    started = time.monotonic()
    missing = available()
    if missing is not None:
        return PoseRun("missing", 0.0, detail=missing)
    with tempfile.TemporaryDirectory(prefix="teleport-sync-pose-") as scratch:
        work = Path(scratch)
        request, result = work / "request.json", work / "result.json"
        request.write_text(json.dumps(_request(path, kind, settings, work, threads)), "utf-8")
        errors = (work / "stderr.txt").open("wb")
        with errors:
            process = subprocess.Popen(
                list(command(request, result)),
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                start_new_session=True,  # its own group: killed whole at the limit
                preexec_fn=dies_with_parent(_limit_memory(settings.pose_memory_mib)),
                env={**os.environ, "GLOG_minloglevel": "2", "OMP_NUM_THREADS": "1"},
            )
            try:
                code = process.wait(timeout=settings.pose_seconds + GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return PoseRun(
                    "timeout",
                    time.monotonic() - started,
                    detail=f"it ran past its {settings.pose_seconds:g} s limit (pose_seconds) "
                    "and was stopped",
                )
        seconds = time.monotonic() - started
        said = _tail(work / "stderr.txt")
        memory = settings.pose_memory_mib
        if code != 0 or not result.exists():
            return PoseRun(
                "crashed", seconds, detail=_crash(code, said) + _memory_hint(said, memory)
            )
        figures = json.loads(result.read_text("utf-8"))
        if figures.get("error"):
            error = str(figures["error"])
            return PoseRun("failed", seconds, figures, detail=error + _memory_hint(error, memory))
        return PoseRun("done", seconds, figures)


def _request(
    path: Path, kind: str, settings: PreflightSettings, work: Path, threads: int | None
) -> dict[str, Any]:
    return {
        "path": str(path),
        "kind": kind,
        "work": str(work),
        "frames": settings.pose_frames,
        "max_side": settings.pose_max_side,
        "fps": settings.pose_fps,
        "features": settings.pose_features,
        "threads": threads or min(2, os.cpu_count() or 1),
        "seconds": settings.pose_seconds,
        "overlap": settings.pose_overlap,
        "exhaustive_up_to": settings.pose_exhaustive_up_to,
    }


def _limit_memory(mebibytes: int) -> Callable[[], None] | None:
    if not mebibytes:
        return None
    limit = mebibytes * 1024 * 1024

    def set_limit() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return set_limit


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _crash(code: int, said: str) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = f"it crashed ({name})"
    else:
        what = f"it exited with status {code} and no result"
    return what + (f": {said}" if said else "")


def _memory_hint(said: str, mebibytes: int) -> str:
    """Why a check that died may have died, when its memory limit is the likely cause: its
    own words were pycolmap's 'reinstall me' or a bare SIGSEGV, never the limit."""
    if not mebibytes:
        return ""
    if mebibytes < LEAST_MEMORY_MIB:
        return (
            f"; pose_memory_mib = {mebibytes} is likely too little (COLMAP's libraries and "
            f"threads take most of 1 GiB of address space): give it at least "
            f"{LEAST_MEMORY_MIB} (default 1536)"
        )
    if any(marker in said for marker in OUT_OF_MEMORY):
        return f"; it ran out of its {mebibytes} MiB (pose_memory_mib): raise it"
    return ""


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()[-STDERR_KEPT:]
    except OSError:
        return ""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
