"""Is the daemon healthy? What it records while it runs, and the `health` report built from it.

The daemon journals three facts, each only when it changes: that it runs (its pid, checked
against the journal's writer lock), whether authentication works, and which watch roots are
watched. `health` reads them beside the running daemon, the same way `status` does, and adds
the count of files per phase. The daemon mirrors the same answers in its metrics gauges and its
systemd STATUS line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from ..api.authstate import AuthSnapshot
from ..journal import Journal
from ..journal.lock import holder
from ..limits import bwlimit_now
from .report import ReasonHook, ReportOptions, live_counts

DAEMON_FACT = "daemon"
AUTH_FACT = "auth"
ROOTS_FACT = "roots"
PREFLIGHT_FACT = "preflight"


def record_daemon_started(journal: Journal) -> None:
    journal.set_fact(DAEMON_FACT, json.dumps({"pid": os.getpid()}))


def record_daemon_stopped(journal: Journal) -> None:
    journal.delete_fact(DAEMON_FACT)


def record_auth(journal: Journal, snapshot: AuthSnapshot) -> None:
    journal.set_fact(AUTH_FACT, json.dumps(asdict(snapshot)))


def record_roots(journal: Journal, roots: list[dict[str, Any]]) -> None:
    journal.set_fact(ROOTS_FACT, json.dumps(roots))


def record_preflight(journal: Journal, enabled: bool, reason: str | None) -> None:
    journal.set_fact(PREFLIGHT_FACT, json.dumps({"enabled": enabled, "reason": reason}))


def daemon_running(journal: Journal) -> tuple[bool, int | None]:
    """Whether the daemon runs now on this journal, and its pid.

    The journal's writer lock says that some process writes it now (the kernel drops the lock
    when a process dies, however it dies); the daemon's fact says whether that writer is the
    daemon rather than a one-shot `upload`.
    """
    writer = holder(journal.path)
    fact = _json_fact(journal, DAEMON_FACT)
    pid = fact.get("pid") if isinstance(fact, dict) else None
    if writer is None or not isinstance(pid, int):
        return False, None
    if writer == -1:  # locked, but the lock file names no pid: trust the fact
        return True, pid
    return (True, pid) if writer == pid else (False, None)


def report_options(
    journal: Journal | None, *, download_wanted: bool = True, bwlimit: str = "off"
) -> ReportOptions:
    """Options for status rows that also say when the running daemon cannot authenticate, or
    when `[upload] bwlimit` closes the upload window now."""
    blocked = None
    if not bwlimit_now(bwlimit, datetime.now())["window_open"]:
        blocked = f"uploads wait: the upload window is closed by [upload] bwlimit ({bwlimit!r})"
    if journal is not None and daemon_running(journal)[0]:
        auth = _json_fact(journal, AUTH_FACT)
        if isinstance(auth, dict) and auth.get("ok") is False:
            blocked = (
                "uploads wait: authentication is failing since "
                f"{auth.get('since')} (see: teleport-sync health)"
            )
    waiting = confirming_reasons(journal) if journal is not None else None
    return ReportOptions(download_wanted=download_wanted, blocked=blocked, waiting=waiting)


def confirming_reasons(journal: Journal) -> ReasonHook | None:
    """For rows in a folder whose claim the running daemon has written and not yet confirmed
    (`watch.claim`: nothing is uploaded from it meanwhile), the sentence saying so."""
    roots = _json_fact(journal, ROOTS_FACT) if daemon_running(journal)[0] else None
    confirming = [
        (Path(str(root["path"])), float(root["claim_confirming_until"]))
        for root in (roots if isinstance(roots, list) else [])
        if isinstance(root, dict) and isinstance(root.get("claim_confirming_until"), int | float)
    ]
    if not confirming:
        return None

    def reason(row: dict[str, Any]) -> str | None:
        path = Path(str(row.get("path")))
        for root, until in confirming:
            if path.is_relative_to(root):
                return confirming_reason(root, until)
        return None

    return reason


def confirming_reason(root: Path, until: float) -> str:
    at = datetime.fromtimestamp(until).strftime("%H:%M:%S")
    return (
        f"uploads wait: this station's claim on {root} is being confirmed ([watch] "
        "claim_settle_seconds: another station may claim the folder at this moment, and one "
        f"of the two uploads); uploads from it begin at {at} if the claim still stands"
    )


def health_report(
    journal: Journal | None,
    configured_roots: list[Path],
    options: ReportOptions | None = None,
    bwlimit: str | None = None,
    preflight: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    pose: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `health --json` contract. `journal` is None when there is no journal yet.

    Also (additive key `preflight`): whether pre-flight is on and, when off, why: as the
    running daemon journaled it, else `preflight` (what this process finds: config, extra; or
    a function finding it, asked only then).

    With `bwlimit` (`[upload] bwlimit`), also the limit in force now and whether the upload
    window is open (additive key `bwlimit`); what `pause` paused (`paused`); and unfinished
    captures still to be deleted from the account (`captures_to_delete`).
    """
    running, pid = daemon_running(journal) if journal is not None else (False, None)
    auth = _json_fact(journal, AUTH_FACT) if journal is not None and running else None
    if not isinstance(auth, dict):
        auth = {"ok": None, "error": None, "since": None}
    roots = _json_fact(journal, ROOTS_FACT) if journal is not None and running else None
    if not isinstance(roots, list):
        roots = [_root_without_daemon(p) for p in configured_roots]
    counts = live_counts(journal, options)[1] if journal is not None else {}
    # A folder another live journal watches is not uploaded from here (`watch.claim`).
    claimed = any(r.get("claimed_by") for r in roots)
    ok = running and auth.get("ok") is not False and all(r.get("watched") for r in roots)
    ok = ok and not claimed
    report: dict[str, Any] = {
        "ok": ok,
        "daemon": {"running": running, "pid": pid},
        "auth": {k: auth.get(k) for k in ("ok", "error", "since")},
        "roots": roots,
        "counts": {phase: n for phase, n in counts.items() if n},
    }
    if bwlimit is not None:
        report["bwlimit"] = bwlimit_now(bwlimit, datetime.now())
    fact = _json_fact(journal, PREFLIGHT_FACT) if running else None
    found = fact if isinstance(fact, dict) else preflight() if callable(preflight) else preflight
    if found is not None:
        report["preflight"] = {"enabled": found.get("enabled"), "reason": found.get("reason")}
    if pose is not None:  # additive: the pose check's mode, and why it cannot run here
        report["pose"] = pose
    if journal is not None:
        report["paused"] = journal.paused_paths()  # "*" = everything (`teleport-sync pause`)
        # Unfinished captures cut loose by a restart, not yet deleted from the account.
        report["captures_to_delete"] = journal.discarded_capture_rows()
    return report


def claim_notes(journal: Journal) -> list[str]:
    """Sentences for `status`: watch folders another journal owns (their files are held here)
    and folders this daemon took over, as the running daemon journaled them."""
    roots = _json_fact(journal, ROOTS_FACT) if daemon_running(journal)[0] else None
    notes = []
    for root in roots if isinstance(roots, list) else []:
        owner, taken = root.get("claimed_by"), root.get("taken_over_from")
        if isinstance(owner, dict):
            notes.append(
                f"{root['path']}: watched by journal {owner.get('journal')} on host "
                f"{owner.get('host')}, pid {owner.get('pid')}: its files are held here"
            )
        until = root.get("claim_confirming_until")
        if isinstance(until, int | float):
            notes.append(f"{root['path']}: {confirming_reason(Path(root['path']), until)}")
        if isinstance(taken, dict):
            notes.append(
                f"{root['path']}: taken over from journal {taken.get('journal')} on host "
                f"{taken.get('host')}, pid {taken.get('pid')}, which stopped"
            )
    return notes


def _root_without_daemon(path: Path) -> dict[str, Any]:
    path = path.absolute()
    if not path.exists():
        problem = f"{path} does not exist"
    elif not path.is_dir():
        problem = f"{path} is a file, not a folder; fix [watch] paths"
    else:
        problem = (
            "the daemon is not running (start it: `teleport-sync run`, or "
            "`systemctl start teleport-sync` where it runs as a service)"
        )
    return {"path": str(path), "watched": False, "problem": problem}


def status_line(counts: dict[str, int], auth: AuthSnapshot, roots: list[dict[str, Any]]) -> str:
    """The systemd STATUS= text: what is going on, and what is wrong first."""
    parts = []
    if auth.ok is False:
        parts.append(f"AUTHENTICATION FAILING since {auth.since}: {auth.error}")
    unwatched = [r["path"] for r in roots if not r.get("watched")]
    if unwatched:
        parts.append(f"not watched: {', '.join(unwatched)}")
    claimed = [r["path"] for r in roots if r.get("claimed_by")]
    if claimed:
        parts.append(f"ANOTHER JOURNAL WATCHES (files held): {', '.join(claimed)}")
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
