"""Is the daemon healthy? What it records while it runs, and the `health` report built from it.

The daemon journals three facts, each only when it changes: that it runs (its pid and the
process's start time, so a reused pid is not mistaken for it), whether authentication works,
and which watch roots are watched. `health` reads them beside the running daemon, the same
way `status` does, and adds the count of files per phase. The daemon mirrors the same answers in
its metrics gauges and its systemd STATUS line.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .authstate import AuthSnapshot
from .journal import Journal
from .report import ReportOptions, phase_counts, status_rows

DAEMON_FACT = "daemon"
AUTH_FACT = "auth"
ROOTS_FACT = "roots"


def process_start(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def record_daemon_started(journal: Journal) -> None:
    pid = os.getpid()
    journal.set_fact(DAEMON_FACT, json.dumps({"pid": pid, "start": process_start(pid)}))


def record_daemon_stopped(journal: Journal) -> None:
    journal.delete_fact(DAEMON_FACT)


def record_auth(journal: Journal, snapshot: AuthSnapshot) -> None:
    journal.set_fact(AUTH_FACT, json.dumps(asdict(snapshot)))


def record_roots(journal: Journal, roots: list[dict[str, Any]]) -> None:
    journal.set_fact(ROOTS_FACT, json.dumps(roots))


def daemon_running(journal: Journal) -> tuple[bool, int | None]:
    """Whether the daemon that last wrote this journal still runs, and its pid."""
    fact = _json_fact(journal, DAEMON_FACT)
    if not isinstance(fact, dict) or not isinstance(fact.get("pid"), int):
        return False, None
    pid = fact["pid"]
    started = process_start(pid)
    if fact.get("start") is not None:
        # The same pid with another start time is another process: the daemon died uncleanly.
        return (started == fact["start"], pid if started == fact["start"] else None)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # alive, owned by someone else
    return True, pid


def health_report(
    journal: Journal | None, configured_roots: list[Path], options: ReportOptions | None = None
) -> dict[str, Any]:
    """The `health --json` contract. `journal` is None when there is no journal yet."""
    running, pid = daemon_running(journal) if journal is not None else (False, None)
    auth = _json_fact(journal, AUTH_FACT) if journal is not None and running else None
    if not isinstance(auth, dict):
        auth = {"ok": None, "error": None, "since": None}
    roots = _json_fact(journal, ROOTS_FACT) if journal is not None and running else None
    if not isinstance(roots, list):
        roots = [_root_without_daemon(p) for p in configured_roots]
    counts = phase_counts(status_rows(journal, options)) if journal is not None else {}
    ok = running and auth.get("ok") is not False and all(r.get("watched") for r in roots)
    return {
        "ok": ok,
        "daemon": {"running": running, "pid": pid},
        "auth": {k: auth.get(k) for k in ("ok", "error", "since")},
        "roots": roots,
        "counts": {phase: n for phase, n in counts.items() if n},
    }


def _root_without_daemon(path: Path) -> dict[str, Any]:
    path = path.absolute()
    if not path.exists():
        problem = f"{path} does not exist"
    elif not path.is_dir():
        problem = f"{path} is a file, not a folder; fix [watch] paths"
    else:
        problem = "the daemon is not running (start it: systemctl start teleport-sync)"
    return {"path": str(path), "watched": False, "problem": problem}


def status_line(counts: dict[str, int], auth: AuthSnapshot, roots: list[dict[str, Any]]) -> str:
    """The systemd STATUS= text: what is going on, and what is wrong first."""
    parts = []
    if auth.ok is False:
        parts.append(f"AUTHENTICATION FAILING since {auth.since}: {auth.error}")
    unwatched = [r["path"] for r in roots if not r.get("watched")]
    if unwatched:
        parts.append(f"not watched: {', '.join(unwatched)}")
    busy = ", ".join(f"{n} {phase}" for phase, n in counts.items() if n)
    parts.append(busy or "no files")
    return "; ".join(parts)


def _json_fact(journal: Journal | None, key: str) -> Any:
    if journal is None:
        return None
    value = journal.fact(key)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
