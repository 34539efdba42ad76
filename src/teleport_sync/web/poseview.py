"""The pose check on a capture's page: "what Teleport will see" before it is paid for.

From the version's pre-flight report (`figures.pose`, written by `preflight.pose`): a sentence
of what was posed, the frames left out by name, and the sparse points and camera path for the
3D view (`static/poseview.js` draws them on a canvas, served as JSON by `/files/N/pose.json`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LEFT_OUT_SHOWN = 60


def _pose(report: dict[str, Any] | None) -> dict[str, Any] | None:
    pose = ((report or {}).get("figures") or {}).get("pose")
    return pose if isinstance(pose, dict) else None


def pose_view(
    report: dict[str, Any] | None, safe_text: Callable[[str | None], str | None]
) -> dict[str, Any] | None:
    """The page's pose section, or None when the pose check did not run for this version.
    `safe_text` redacts what must never be shown (the console's own filter)."""
    pose = _pose(report)
    if pose is None:
        return None
    if pose.get("status") != "done":
        return {"sentence": safe_text(f"Not judged: {pose.get('detail')}"), "left_out": []}
    pieces = pose.get("pieces") or []
    shape = "in one piece" if len(pieces) == 1 else f"in pieces of {' + '.join(map(str, pieces))}"
    sentence = (
        f"Posed {pose.get('posed')} of {pose.get('frames')} frames {shape}"
        if pieces
        else f"No frame could be posed (0 of {pose.get('frames')})"
    )
    left_out = [safe_text(str(n)) for n in (pose.get("left_out") or [])]
    return {
        "sentence": safe_text(f"{sentence}; {pose.get('points', 0)} points."),
        "left_out": left_out[:LEFT_OUT_SHOWN],
        "more_left_out": max(0, len(left_out) - LEFT_OUT_SHOWN),
        "has_cloud": bool(pose.get("cloud")),
    }


def pose_cloud(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The 3D view's data: points as [x, y, z, r, g, b] and the camera path as [x, y, z]."""
    pose = _pose(report)
    if pose is None or not pose.get("cloud"):
        return None
    return {
        "points": pose["cloud"],
        "path": [step[1:4] for step in pose.get("path") or []],
    }
