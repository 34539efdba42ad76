"""A child doing native work (remux, pose check) ends when the daemon that started it is
killed with SIGKILL, so a restarted daemon never races an orphan over the same work files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teleport_sync.children import dies_with_parent

PARENT = """
import subprocess, sys, time
from teleport_sync.children import dies_with_parent
guard = dies_with_parent() if sys.argv[1] == "guarded" else None
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=guard)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _orphan_after_parent_killed(mode: str) -> tuple[int, bool]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    return child, alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_guarded_child_ends_with_its_killed_parent() -> None:
    _, alive = _orphan_after_parent_killed("guarded")
    assert not alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_an_unguarded_child_would_outlive_it() -> None:
    # The control: without the guard the same child survives, so the test above can fail.
    _, alive = _orphan_after_parent_killed("plain")
    assert alive


def test_the_guard_runs_what_comes_after_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getppid())"],
        preexec_fn=dies_with_parent(lambda: marker.write_text(str(os.getpid()))),
        capture_output=True,
        text=True,
    )
    # `then` (the pose check's memory limit, say) ran in the child, between fork and exec.
    assert done.returncode == 0 and int(done.stdout) == os.getpid()
    assert marker.read_text() != str(os.getpid())
