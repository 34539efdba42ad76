"""The emulator's results: model files per profile (with HTTP Range), previews, a gif.

These play the CDN: no bearer token is needed, as for the live service's model URLs. A test may
cut a model download after N bytes (`model_drop_after_bytes`, `model_drops`) to prove resumption,
or ask for a large zero-filled `ply` (`model_bytes`) to prove flat memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from .artefacts import (
    PREVIEW_GIF,
    PREVIEW_SIZES,
    iter_sparse_ply,
    model_files,
    preview_png,
    sparse_ply_size,
)
from .backend import Backend, EmulatorError
from .faults import EmulatorConfig
from .stats import EmulatorStats

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class DroppedConnection(Exception):
    """Raised mid-body on purpose: the server closes the connection (a fault knob)."""


def profile_models(
    config: EmulatorConfig, public_url: str, sid: str, profile: str, quality: str
) -> list[dict[str, Any]]:
    """The `SegmentModel`s of one profile, as JSON objects; empty when it is not made."""
    models = []
    for index, (name, data) in enumerate(model_files(profile, quality)):
        size = len(data)
        if profile == "ply" and config.model_bytes > 0:
            size = sparse_ply_size(config.model_bytes)
        url = f"{public_url}/_emulator/models/{sid}/{profile}/{name}?quality={quality}"
        models.append({"url": url, "size": size, "id": str(index)})
    return models


def preview_fields(public_url: str, sid: str) -> dict[str, Any]:
    """The capture listing's preview fields for a READY capture."""
    urls = {
        f"{w}x{h}": f"{public_url}/_emulator/previews/{sid}/{w}x{h}.png" for w, h in PREVIEW_SIZES
    }
    return {
        "preview_urls": urls,
        "preview_url": next(iter(urls.values())),
        "gif_url": f"{public_url}/_emulator/previews/{sid}/turntable.gif",
    }


def add_result_routes(
    app: FastAPI, backend: Backend, stats: EmulatorStats, public_url: str
) -> None:
    config = backend.config

    @app.get("/_emulator/models/{sid}/{profile}/{name}", include_in_schema=False)
    def model_file(
        sid: str, profile: str, name: str, request: Request, quality: str = "hd"
    ) -> Response:
        backend.by_sid(sid)
        size, read = _model_source(config, profile, name, quality)
        wanted = request.headers.get("range")
        span = _parse_range(wanted, size)
        path = request.url.path
        if span is None:
            stats.record("model", "GET", path, 416, range=wanted)
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        start, end = span
        status = 206 if wanted else 200
        stats.record("model", "GET", path, status, range=wanted)
        headers = {"Content-Length": str(end - start), "Accept-Ranges": "bytes"}
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        body = _maybe_dropped(config, read(start, end))
        return StreamingResponse(
            body, status_code=status, headers=headers, media_type="application/octet-stream"
        )

    @app.get("/_emulator/previews/{sid}/{name}", include_in_schema=False)
    def preview(sid: str, name: str) -> Response:
        backend.by_sid(sid)
        if name == "turntable.gif":
            return Response(PREVIEW_GIF, media_type="image/gif")
        match = re.fullmatch(r"(\d+)x(\d+)\.png", name)
        if not match or (int(match[1]), int(match[2])) not in PREVIEW_SIZES:
            raise EmulatorError(404, f"no preview {name}")
        return Response(preview_png(int(match[1]), int(match[2])), media_type="image/png")


def _model_source(config: EmulatorConfig, profile: str, name: str, quality: str) -> tuple[int, Any]:
    """The file's size and a function giving an iterator over bytes [start, end)."""
    if profile == "ply" and config.model_bytes > 0:
        total = config.model_bytes
        return sparse_ply_size(total), lambda s, e: iter_sparse_ply(total, s, e)
    files = dict(model_files(profile, quality))
    if name not in files:
        raise EmulatorError(404, f"no model file {profile}/{name}")
    data = files[name]

    def read(start: int, end: int) -> Iterator[bytes]:
        for offset in range(start, end, 1 << 16):
            yield data[offset : min(end, offset + (1 << 16))]

    return len(data), read


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of one `bytes=` range; the whole file without one; None if unsatisfiable."""
    if not header:
        return 0, size
    match = _RANGE.match(header.strip())
    if not match or not (match[1] or match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        return max(0, size - int(match[2])), size
    start = int(match[1])
    end = min(size, int(match[2]) + 1) if match[2] else size
    return (start, end) if start < end else None


def _maybe_dropped(config: EmulatorConfig, body: Iterator[bytes]) -> Iterator[bytes]:
    """`body`, or its first `model_drop_after_bytes` and then a dropped connection."""
    if config.model_drops <= 0:
        yield from body
        return
    config.model_drops -= 1
    left = config.model_drop_after_bytes
    for block in body:
        if len(block) >= left:
            if left:
                yield block[:left]
            raise DroppedConnection("the emulator drops this download on purpose")
        left -= len(block)
        yield block
