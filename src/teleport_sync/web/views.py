"""What the console shows, in words: phases, reasons, sizes, durations, timelines. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

PHASES = (
    "settling",
    "incomplete",
    "queued",
    "held",
    "paused",
    "uploading",
    "completing",
    "processing",
    "downloading",
    "done",
    "failed",
    "rejected",
)
TERMINAL_FAILED = ("FAILED", "ERROR")


def phase_of(row: dict[str, Any], *, download: bool = True) -> tuple[str, str | None]:
    """The row's phase and reason: the journal's own when it has them, else read from its states."""
    if row.get("phase"):
        return str(row["phase"]), row.get("reason")
    state = row["upload_state"]
    capture = (row.get("capture_state") or "").upper()
    if state == "rejected":
        return "rejected", row.get("error")
    if state == "failed":
        when = row.get("next_attempt_at")
        retry = f"; tried again at {short_time(when)}" if when else ""
        return "failed", f"{row.get('error') or 'the last attempt failed'}{retry}"
    if state == "pending":
        return "queued", "waiting for an upload slot"
    if state == "uploading":
        if row.get("num_parts") and row.get("parts_done") == row.get("num_parts"):
            return "completing", "all parts sent; telling Teleport the upload is complete"
        sent = f"{row.get('parts_done') or 0} of {row.get('num_parts') or '?'} parts sent"
        return "uploading", sent
    if capture == "READY":
        if row.get("result_error"):
            return "downloading", row["result_error"]
        if row.get("result_paths") or not download:
            return "done", None
        return "downloading", "the model is ready; fetching it"
    if capture in TERMINAL_FAILED:
        return "failed", row.get("error") or "Teleport could not make a model from this input"
    return "processing", f"Teleport is processing it ({capture or 'waiting for its first state'})"


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
