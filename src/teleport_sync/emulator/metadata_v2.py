"""Capture Metadata v2 as the emulator serves it (NOTES "Metadata v2"): not in the reference.

`GET /api/v2/captures/{RESOURCEID}/metadata` with `content_profile`, `crop_variant` and
`coord_system`; `RESOURCEID` is the capture's `sid`, or `{sid}-{segment}` for one segment (the
emulator's captures have one segment, the capture itself: any other segment answers 404). The
answer carries `model_url` and `cameras_url`, plus fields whose names the public docs do not
give (an initial camera, telemetry): clients must keep them and never fail on them.

The camera list names the input's images (a zip's, by their path in it; a video's as the
frames `frame_00000.jpg`, ... the service would extract at 2 frames a second) and leaves some
out, as the real service does with frames it cannot pose: those named by the knob
`cameras_left_out`, else every `cameras_leave_out_every`-th one (0: none).

The knob `metadata_v2_status` plays an account without v2: any value but 200 is answered
for every v2 request (404 as a missing route, 405, 403 ...).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import PurePosixPath
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from .backend import IMAGE_SUFFIXES, Backend, Capture, EmulatorError
from .results import profile_models

# A video is counted at 2 frames a second (NOTES "What public clients show"), from 30 fps.
VIDEO_FRAME_STEP = 15
_STATUS_TEXT = {404: "Not Found", 405: "Method Not Allowed", 403: "Forbidden"}


def image_names(backend: Backend, capture: Capture) -> list[str]:
    """The names the service gives the frames it tries to pose, in order."""
    if capture.input_data_format == "bulk-images":
        try:
            with zipfile.ZipFile(backend.storage.open_object(capture.eid)) as archive:
                return [
                    n
                    for n in archive.namelist()
                    if n.lower().endswith(IMAGE_SUFFIXES) and not n.endswith("/")
                ]
        except (zipfile.BadZipFile, OSError, ValueError):
            return []
    frames = capture.num_frames or 90
    return [f"frame_{i:05d}.jpg" for i in range(0, frames, VIDEO_FRAME_STEP)]


def left_out(names: list[str], chosen: list[str], every: int) -> set[str]:
    """The frames the emulated service could not pose."""
    if chosen:
        wanted = {c.lower() for c in chosen}
        return {n for n in names if PurePosixPath(n).name.lower() in wanted or n.lower() in wanted}
    if every <= 0:
        return set()
    return {n for i, n in enumerate(names) if i % every == every - 1}


def camera_list(backend: Backend, capture: Capture) -> dict[str, Any]:
    """`{"cameras": [...]}`: each posed frame on a circle around the subject, looking in."""
    config = backend.config
    names = image_names(backend, capture)
    dropped = left_out(names, list(config.cameras_left_out), config.cameras_leave_out_every)
    cameras = []
    for index, name in enumerate(names):
        if name in dropped:
            continue
        angle = 2 * math.pi * index / max(1, len(names))
        cameras.append(
            {
                "image_name": name,
                "position": [round(2 * math.cos(angle), 6), 0.3, round(2 * math.sin(angle), 6)],
                "rotation": [
                    round(math.cos(-angle / 2), 6),
                    0.0,
                    round(math.sin(-angle / 2), 6),
                    0.0,
                ],
                "focal_length_px": 1200.0,
            }
        )
    return {"cameras": cameras, "frames_tried": len(names)}


def _resource(backend: Backend, resource_id: str) -> Capture:
    """The capture of `{sid}` or `{sid}-{segment}`; 404 for a wrong combination."""
    sid, _, segment = resource_id.partition("-")
    capture = backend.by_sid(sid)
    if segment and segment != capture.eid:
        raise EmulatorError(404, f"share {sid} has no segment {segment}")
    return capture


def add_metadata_v2_routes(
    app: FastAPI, backend: Backend, public_url: str, auth: list[Any]
) -> None:
    """The v2 route (behind the bearer check `auth`) and the camera lists' CDN path."""
    config = backend.config

    @app.get("/api/v2/captures/{resource_id}/metadata", dependencies=auth, include_in_schema=False)
    def metadata_v2(
        resource_id: str,
        content_profile: str = Query("ply"),
        crop_variant: str | None = Query(None),
        coord_system: str | None = Query(None),
    ) -> Any:
        if config.metadata_v2_status != 200:
            status = config.metadata_v2_status
            return JSONResponse({"detail": _STATUS_TEXT.get(status, "error")}, status_code=status)
        capture = _resource(backend, resource_id)
        if backend.state_of(capture) != "READY" or capture.sid is None:
            raise EmulatorError(404, f"{resource_id} has no finished model yet")
        models = profile_models(config, public_url, capture.sid, content_profile, "hd")
        if not models:
            raise EmulatorError(404, f"{resource_id} has no model for profile {content_profile}")
        body: dict[str, Any] = {
            "sid": capture.sid,
            "content_profile": content_profile,
            "crop_variant": crop_variant or "autocrop",
            "coord_system": coord_system or "colmap",
            "model_url": models[0]["url"],
            "model_size": models[0]["size"],
            "cameras_url": f"{public_url}/_emulator/cameras/{capture.sid}.json",
            # Named in the docs, field names unpublished: a client keeps what it does not know.
            "initial_camera": {"position": [2.0, 0.3, 0.0], "rotation": [1.0, 0.0, 0.0, 0.0]},
            "registration": {"gps": None, "telemetry": "none recorded"},
        }
        if len(models) > 1:
            body["model_urls"] = [m["url"] for m in models]
            body["model_sizes"] = [m["size"] for m in models]
        return body

    @app.get("/_emulator/cameras/{sid}.json", include_in_schema=False)
    def cameras(sid: str) -> Any:
        return camera_list(backend, backend.by_sid(sid))
