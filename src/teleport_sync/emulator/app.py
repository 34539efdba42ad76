"""The emulator's HTTP face: the reference API's paths and schemas, a token endpoint, faults.

Request and response schemas mirror the reference (names, required fields, 422
`HTTPValidationError`s from FastAPI's own validation). Paths under `/_emulator/` are for tests
and the demo, and are left out of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from .backend import Backend, Capture, EmulatorError
from .faults import EmulatorConfig
from .metadata_v2 import add_metadata_v2_routes
from .results import add_result_routes, preview_fields, profile_models
from .stats import EmulatorStats

# -- schemas, as the reference names them -----------------------------------------------------


class FocusArea(BaseModel):
    buffer_meters: float | None = None
    crop_method: str | None = None
    max_lat: float | None = None
    max_lng: float | None = None
    min_lat: float | None = None
    min_lng: float | None = None
    polylines: list[str] = Field(default_factory=list)


class TrainingParameters(BaseModel, extra="allow"):
    focus_area: FocusArea | None = None


class NewCaptureInput(BaseModel):
    name: str
    bytesize: int
    created: str | None = Field(default=None, deprecated=True)
    num_frames: int | None = None
    input_data_format: str = "commonformat-ios"
    guided_mode: bool | None = None
    ios_app_version: str | None = None
    training_parameters: TrainingParameters | None = None


class NewCaptureOutput(BaseModel):
    eid: str
    chunk_size: int
    num_parts: int


class RecreateCaptureUploadUrls(BaseModel):
    eid: str
    bytesize: int


class UploadUrlOutput(BaseModel):
    eid: str
    upload_url: str
    chunk_size: int


class UploadedPart(BaseModel):
    number: int
    etag: str


class CaptureUploadedInput(BaseModel):
    eid: str
    parts: list[UploadedPart]


class EditCaptureInput(BaseModel):
    name: str


class CaptureOutput(BaseModel):
    eid: str
    sid: str | None
    name: str
    created: datetime
    uploaded: datetime | None
    state: str
    error_reason: str | None
    state_description: str | None
    error_reason_slug: str | None
    preview_urls: dict[str, str]
    preview_url: str | None
    viewer_url: str | None
    share_url: str | None
    share_link: str | None
    gif_url: str | None
    video_url: str | None
    share_video_url: str | None
    is_public: bool


class Matrix(BaseModel):
    matrix: list[float]


class SegmentModel(BaseModel):
    url: str
    size: int
    id: str | None = None
    aabb: dict[str, list[float]] | None = None
    resolution_range: list[float] | None = None
    parent: str | None = None


class CaptureMetadata(BaseModel):
    eid: str
    sid: str | None = None
    name: str
    segmented_capture_eid: str | None
    profile_name: str
    lod: bool
    hdr_mode: str | None = None
    nominal_ev: int | None = 0
    tmo_parameters: list[float] | None = None
    model_urls: list[str]
    cameras: list[Matrix]
    models: list[SegmentModel]
    video_trajectory: dict[str, Any] | None = None
    reposition_data: dict[str, float] | None = None


_EID_IN_PATH = re.compile(r"^/api/v1/captures/([^/]+)")

# -- the app ------------------------------------------------------------------------------------


def create_app(backend: Backend, stats: EmulatorStats, public_url: str) -> FastAPI:
    config = backend.config
    app = FastAPI(title="FastAPI", version="0.1.0")

    @app.exception_handler(EmulatorError)
    async def _emulator_error(request: Request, exc: EmulatorError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def _faults_and_bookkeeping(request: Request, call_next: Any) -> Response:
        path = request.url.path
        is_api = path.startswith(("/api/", "/share/"))
        slow = is_api and config.roll(config.slow_api_rate)
        if is_api and request.method == "POST" and path == "/api/v1/captures":
            slow = config.take_slow_create() or slow
        if is_api and config.roll(config.api_503_retry_after_rate):
            response: Response = JSONResponse(
                {"detail": "Service temporarily unavailable"},
                status_code=503,
                headers={"Retry-After": f"{config.retry_after_seconds:g}"},
            )
        elif is_api and config.roll(config.api_5xx_rate):
            response = JSONResponse({"detail": "Internal server error"}, status_code=500)
        else:
            response = await call_next(request)
        if slow:
            # The work is done; only the answer is late (a slow proxy or link), so a client that
            # gives up must find out what happened instead of doing it twice.
            await asyncio.sleep(config.slow_api_seconds)
        if is_api or path == "/oauth2/token":
            kind = "api" if is_api else "token"
            match = _EID_IN_PATH.match(path)
            eid = match.group(1) if match else None
            query = request.url.query or None
            await run_in_threadpool(
                stats.record, kind, request.method, path, response.status_code, eid=eid, query=query
            )
        return response

    def bearer(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not token or not backend.token_valid(token):
            raise EmulatorError(401, "Not authenticated: missing, unknown or expired bearer token")

    def out(capture: Capture) -> CaptureOutput:
        state = backend.state_of(capture)
        failed = capture.verdict is not None and state == config.failed_state_name
        share = f"{public_url}/share/{capture.sid}" if capture.sid else None
        ready = state == "READY" and capture.sid is not None
        previews = preview_fields(public_url, capture.sid) if ready and capture.sid else {}
        return CaptureOutput(
            eid=capture.eid,
            sid=capture.sid,
            name=capture.name,
            created=capture.created,
            uploaded=capture.uploaded,
            state=state,
            error_reason=capture.verdict if failed else None,
            state_description=capture.verdict_text if failed else None,
            error_reason_slug=capture.verdict if failed else None,
            preview_urls=previews.get("preview_urls", {}),
            preview_url=previews.get("preview_url"),
            viewer_url=share if ready else None,
            share_url=share if state == "READY" else None,
            share_link=share if state == "READY" else None,
            gif_url=previews.get("gif_url"),
            video_url=None,
            share_video_url=None,
            is_public=False,
        )

    auth = [Depends(bearer)]

    @app.post("/oauth2/token", include_in_schema=False)
    async def token(request: Request) -> JSONResponse:
        raw = await request.body()
        body: dict[str, Any]
        if "json" in request.headers.get("content-type", ""):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"error": "invalid_request"}, status_code=400)
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if body.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            value, ttl = backend.issue_token(
                str(body.get("client_id", "")), str(body.get("client_secret", ""))
            )
        except EmulatorError:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status_code=401,
            )
        stats.tokens_issued.append(value)
        return JSONResponse({"access_token": value, "expires_in": ttl, "token_type": "bearer"})

    @app.get(
        "/api/v1/captures",
        response_model=list[CaptureOutput],
        dependencies=auth,
        summary="List captures",
        description="Get all user captures",
    )
    def list_captures(limit: int = 25, offset: int = 0, time_zone: bool = False) -> Any:
        if config.list_page_cap > 0:
            limit = min(limit, config.list_page_cap)
        return [out(c) for c in backend.page(max(0, offset), limit)]

    @app.post(
        "/api/v1/captures",
        response_model=NewCaptureOutput,
        dependencies=auth,
        summary="New capture",
    )
    def new_capture(body: NewCaptureInput) -> Any:
        params = body.training_parameters
        capture = backend.create(
            body.name,
            body.bytesize,
            body.input_data_format,
            params.model_dump(exclude_none=True) if params is not None else None,
            body.num_frames,
        )
        return NewCaptureOutput(
            eid=capture.eid, chunk_size=capture.chunk_size, num_parts=capture.num_parts
        )

    @app.put(
        "/api/v1/captures/{eid}",
        response_model=CaptureOutput,
        dependencies=auth,
        summary="Modify capture",
    )
    def modify_capture(eid: str, body: EditCaptureInput, time_zone: Any = Query(False)) -> Any:
        return out(backend.rename(eid, body.name))

    @app.delete(
        "/api/v1/captures/{eid}", status_code=204, dependencies=auth, summary="Delete capture"
    )
    def delete_capture(eid: str) -> Response:
        backend.delete(eid)
        return Response(status_code=204)

    @app.post(
        "/api/v1/captures/{eid}/create-upload-url/{part_no}",
        response_model=UploadUrlOutput,
        dependencies=auth,
        summary="Create upload URL",
    )
    def create_upload_url(eid: str, part_no: int, body: RecreateCaptureUploadUrls) -> Any:
        if body.eid != eid:
            raise EmulatorError(400, "the body's eid differs from the path's")
        url = backend.upload_url(eid, part_no, body.bytesize)
        return UploadUrlOutput(eid=eid, upload_url=url, chunk_size=backend.get(eid).chunk_size)

    @app.post(
        "/api/v1/captures/{eid}/uploaded",
        response_model=CaptureOutput,
        dependencies=auth,
        summary="Complete upload",
    )
    def complete_upload(eid: str, body: CaptureUploadedInput) -> Any:
        if body.eid != eid:
            raise EmulatorError(400, "the body's eid differs from the path's")
        capture = backend.complete(eid, [(p.number, p.etag) for p in body.parts])
        if config.roll(config.lose_uploaded_response_rate):
            return JSONResponse({"detail": "Bad gateway"}, status_code=502)
        return out(capture)

    @app.get(
        "/share/{sid}/metadata",
        response_model=CaptureMetadata,
        dependencies=auth,
        summary="Get metadata",
    )
    def get_metadata(
        sid: str,
        lod: Any = Query(None, description="Level of detail hierarchy"),
        profiles: Any = Query(None, description="Content-type profile"),
        quality: str | None = Query(None),
        use_cdn: bool = True,
        request: Request = None,  # type: ignore[assignment]
    ) -> Any:
        capture = backend.by_sid(sid)
        if backend.state_of(capture) != "READY":
            raise EmulatorError(404, f"share {sid} has no finished model yet")
        wanted = request.query_params.getlist("profiles") or ["ply"]
        chosen = quality if quality in ("sd", "hd") else "hd"
        by_profile = {p: profile_models(config, public_url, sid, p, chosen) for p in wanted}
        models = [m for p in wanted for m in by_profile[p]]
        body = CaptureMetadata(
            eid=capture.eid,
            sid=sid,
            name=capture.name,
            segmented_capture_eid=None,
            profile_name=",".join(wanted),
            lod=str(lod).lower() in ("1", "true"),
            model_urls=[m["url"] for m in models],
            cameras=[Matrix(matrix=[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])],
            models=[SegmentModel(**m) for m in models],
        )
        if config.metadata_models_shape != "object":
            return body
        # As public integrations read it: `models[<profile>]`, a list for multi-file profiles.
        shaped = body.model_dump(mode="json")
        shaped["models"] = {
            p: (ms[0] if len(ms) == 1 else ms) for p, ms in by_profile.items() if ms
        }
        return JSONResponse(shaped)

    # -- for tests and the demo; not part of the API ------------------------------------------

    add_result_routes(app, backend, stats, public_url)
    add_metadata_v2_routes(app, backend, public_url, auth)

    @app.get("/_emulator/stats", include_in_schema=False)
    def stats_json() -> Any:
        return stats.as_json()

    @app.get("/_emulator/captures/{eid}/object", include_in_schema=False)
    def capture_object(eid: str) -> StreamingResponse:
        backend.get(eid)
        return StreamingResponse(backend.storage.iter_object(eid))

    @app.post("/_emulator/config", include_in_schema=False)
    async def set_knobs(request: Request) -> Any:
        known = {f.name for f in fields(EmulatorConfig) if not f.name.startswith("_")}
        changes = await request.json()
        unknown = set(changes) - known
        if unknown:
            return JSONResponse({"detail": f"unknown knobs: {sorted(unknown)}"}, status_code=400)
        for key, value in changes.items():
            setattr(config, key, value)
        return {k: getattr(config, k) for k in sorted(known)}

    @app.get("/_emulator/health", include_in_schema=False)
    def health() -> Any:
        return {"ok": True, "time": time.time()}

    return app
