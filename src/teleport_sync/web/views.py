"""What the console shows, in words: phases, reasons, sizes, durations, timelines. Pure."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from ..journal.states import UploadState
from ..models import failure_advice


def phase_of(row: dict[str, Any]) -> tuple[str, str | None]:
    """The row's phase and reason, as `phases.derive` gave them in the status report."""
    return str(row["phase"]), row.get("reason")


# Where a long path or file name may wrap: after a folder separator, `_`, `-`, `.` or a space.
_SEPARATOR = re.compile(r"([/_.\-\s]+)")


def breakable(text: object) -> Markup:
    """`text` escaped, with a line-break opportunity after each separator (so a long name
    wraps between its words, and mid-word only when a word alone is wider than the line)."""
    return Markup(_SEPARATOR.sub(r"\1<wbr>", str(escape(text))))


def preflight_warning(preflight: dict[str, Any] | None) -> str | None:
    """What pre-flight found wrong (its reasons), for the file's row in every phase, the
    upload's and after; None when it found nothing, or while it holds the file (the row's
    reason says so then)."""
    if not preflight or not preflight.get("reasons"):
        return None
    reasons = "; ".join(str(r) for r in preflight["reasons"])
    if preflight.get("verdict") == "warn":
        return f"pre-flight warns: {reasons}"
    if preflight.get("verdict") == "hold" and preflight.get("approved_at"):
        return f"pre-flight held it, then it was approved: {reasons}"
    return None


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def human_rate(bytes_per_second: float | None) -> str:
    if not bytes_per_second:
        return "idle"
    return f"{human_size(int(bytes_per_second))}/s"


def human_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def short_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def timeline(
    steps: list[tuple[str, str | None]], now: str, *, finished: bool = False
) -> list[dict[str, str]]:
    """[(label, iso time)] in order, each with how long it lasted (until the next, or `now`).

    The last step of a `finished` file lasts no time: it is where the file ended up.
    """
    known = [(label, at) for label, at in steps if at]
    out = []
    for i, (label, at) in enumerate(known):
        until = known[i + 1][1] if i + 1 < len(known) else None
        if until is None and finished:
            out.append({"label": label, "at": short_time(at), "lasted": ""})
            continue
        end = datetime.fromisoformat(until or now)
        lasted = (end - datetime.fromisoformat(at)).total_seconds()
        out.append(
            {
                "label": label,
                "at": short_time(at),
                "lasted": human_duration(lasted) + ("" if until else " so far"),
            }
        )
    return out


_PHASE_ADVICE = {
    "rejected": "The file cannot be uploaded as it is. Fix or replace it: a changed file is "
    "looked at again by itself.",
    "failed-upload": "A network, server or permission problem. It is retried by itself; "
    "Retry now tries at once, after you fixed what the message names.",
    "failed-capture": "Teleport could not make a model from this input. Upload a new version "
    "of the file to try again.",
}


def advice(phase: str, upload_state: str, error: str | None) -> str | None:
    """What the failure means and what to do about it, or None when nothing failed."""
    if phase not in ("failed", "rejected"):
        return None
    said = failure_advice(error)  # Teleport's slugs, in the words status uses too
    if said:
        return f"{said[0].upper()}{said[1:]}."
    if phase == "rejected":
        return _PHASE_ADVICE["rejected"]
    return _PHASE_ADVICE[
        "failed-upload" if upload_state == UploadState.FAILED else "failed-capture"
    ]
