"""Renderers: an event as the body a target wants (`json` as it is, `slack` as Block Kit).

Slack's incoming webhooks take `text` (the fallback shown in notifications) and `blocks`; we use
only `section` (mrkdwn text and fields) and `context` blocks, within Slack's documented limits
(section text 3,000 characters, 10 fields of 2,000, 10 context elements, 50 blocks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .payloads import Event

TITLES = {
    "ready": ":white_check_mark: Capture ready",
    "failed": ":x: Capture failed",
    "rejected": ":no_entry: File rejected",
    "held": ":raised_hand: File held by pre-flight",
    "auth": ":key: Authentication",
    "stuck": ":hourglass: Capture stuck",
    "test": ":wave: teleport-sync test",
}
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
MAX_FIELDS = 10


def escape_mrkdwn(text: str) -> str:
    """Slack treats &, < and > as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(text, limit)}


def _headline(event: Event) -> str:
    data = event.data
    title = TITLES.get(event.kind, event.kind)
    subject = data.get("file_name") or data.get("capture_name")
    if event.kind == "auth":
        return f"{title} {data.get('state', '')}"
    if subject:
        return f"{title}: {subject}"
    return title


def to_slack(event: Event) -> dict[str, Any]:
    data = event.data
    headline = _headline(event)
    lines = [f"*{escape_mrkdwn(headline)}*"]
    if data.get("reason"):
        lines.append(escape_mrkdwn(str(data["reason"])))
    if data.get("viewer_url"):
        lines.append(f"<{data['viewer_url']}|Open in the viewer>")
    fields = []
    for label, key in (
        ("Capture", "capture_name"),
        ("State", "state"),
        ("eid", "eid"),
        ("sid", "sid"),
        ("File", "file"),
    ):
        if data.get(key):
            fields.append(_mrkdwn(f"*{label}*\n{escape_mrkdwn(str(data[key]))}", FIELD_MAX))
    results = data.get("result_paths") or []
    if results:
        listed = "\n".join(escape_mrkdwn(str(p)) for p in results)
        fields.append(_mrkdwn(f"*Results*\n{listed}", FIELD_MAX))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn("\n".join(lines), SECTION_TEXT_MAX)}
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    context = f"teleport-sync · {event.kind} · {data.get('occurred_at', '')} · id {event.event_id}"
    blocks.append({"type": "context", "elements": [_mrkdwn(escape_mrkdwn(context), FIELD_MAX)]})
    return {"text": _clip(headline, SECTION_TEXT_MAX), "blocks": blocks}


def to_json(event: Event) -> dict[str, Any]:
    return event.payload()


FORMATS: dict[str, Callable[[Event], dict[str, Any]]] = {"json": to_json, "slack": to_slack}


def render(event: Event, fmt: str) -> bytes:
    return json.dumps(FORMATS[fmt](event), ensure_ascii=False).encode("utf-8")
