"""Pydantic models of the Teleport API schemas (see the API reference).

Pure data: this module imports nothing else of ours. Every response model tolerates unknown
fields (the API grows) and keeps `state` an open string, because the reference leaves
`CaptureState` open and new values must never crash the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Response(BaseModel):
    """Base for what the server sends: unknown fields are kept, never an error."""

    model_config = ConfigDict(extra="allow")


class _Request(BaseModel):
    """Base for what we send: typos in our own code must fail loudly."""

    model_config = ConfigDict(extra="forbid")


class InputDataFormat(StrEnum):
    BULK_IMAGES = "bulk-images"
    VIDEO = "video"
    COMMONFORMAT_IOS = "commonformat-ios"


class CaptureState(StrEnum):
    """States seen in public docs. `state` fields stay `str`: compare against these."""

    CREATED = "CREATED"
    UPLOADING = "UPLOADING"
    UPLOADED = "UPLOADED"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"
    # The webhook documentation's name for a failed capture.
    ERROR = "ERROR"


FAILED_STATES = frozenset({CaptureState.FAILED.value, CaptureState.ERROR.value})
TERMINAL_STATES = frozenset({CaptureState.READY.value, *FAILED_STATES})


# States of a capture whose upload has not been completed: an orphan may be in either (some
# servers say UPLOADING once an upload URL was asked for), and neither means "complete".
AWAITING_UPLOAD_STATES = frozenset({CaptureState.CREATED.value, CaptureState.UPLOADING.value})


def awaiting_upload(state: str | None) -> bool:
    return state is not None and state.upper() in AWAITING_UPLOAD_STATES


def is_failed(state: str | None) -> bool:
    """FAILED or ERROR, in any letter case."""
    return state is not None and state.upper() in FAILED_STATES


def is_terminal(state: str | None) -> bool:
    # Case is not trusted: a server saying "ready" means READY.
    return state is not None and state.upper() in TERMINAL_STATES


@dataclass(frozen=True)
class FileIdentity:
    """What makes a file version: (dev, inode, size, mtime_ns) plus a cheap content fingerprint."""

    dev: int
    inode: int
    size: int
    mtime_ns: int
    fingerprint: str


class ValidationError(_Response):
    loc: list[Any] = Field(default_factory=list)
    msg: str = ""
    type: str = ""


class HTTPValidationError(_Response):
    detail: list[ValidationError] | str | None = None

    def render(self) -> str:
        """One readable sentence per problem: `body.bytesize: Field required`."""
        if self.detail is None:
            return "validation failed"
        if isinstance(self.detail, str):
            return self.detail
        lines = []
        for err in self.detail:
            where = ".".join(str(part) for part in err.loc) or "request"
            lines.append(f"{where}: {err.msg}")
        return "; ".join(lines)


class FocusArea(_Response):
    buffer_meters: float | None = None
    crop_method: str | None = None
    max_lat: float | None = None
    max_lng: float | None = None
    min_lat: float | None = None
    min_lng: float | None = None
    polylines: list[str] = Field(default_factory=list)


class TrainingParameters(_Response):
    """Optional training options; `modelv3` and other plan-gated keys pass through as extras."""

    focus_area: FocusArea | None = None


class NewCaptureInput(_Request):
    name: str
    bytesize: int
    input_data_format: InputDataFormat
    created: str | None = None
    num_frames: int | None = None
    guided_mode: bool | None = None
    ios_app_version: str | None = None
    training_parameters: dict[str, Any] | None = None


class NewCaptureOutput(_Response):
    eid: str
    chunk_size: int
    num_parts: int


class RecreateCaptureUploadUrls(_Request):
    eid: str
    bytesize: int


class UploadUrlOutput(_Response):
    eid: str
    upload_url: str
    chunk_size: int


class UploadedPart(_Request):
    number: int
    etag: str


class CaptureUploadedInput(_Request):
    eid: str
    parts: list[UploadedPart]


class EditCaptureInput(_Request):
    name: str


class CaptureOutput(_Response):
    eid: str
    name: str
    state: str
    created: datetime
    sid: str | None = None
    uploaded: datetime | None = None
    error_reason: str | None = None
    state_description: str | None = None
    error_reason_slug: str | None = None
    preview_urls: dict[str, str] = Field(default_factory=dict)
    preview_url: str | None = None
    viewer_url: str | None = None
    share_url: str | None = None
    share_link: str | None = None
    gif_url: str | None = None
    video_url: str | None = None
    share_video_url: str | None = None
    is_public: bool = False

    @property
    def failure_reason(self) -> str:
        """Why the server failed the capture: its slug first (scripts match on it), then its
        words."""
        slug = self.error_reason_slug or self.error_reason
        words = self.state_description
        return ": ".join(x for x in (slug, words) if x) or "no reason given"

    @field_validator("created", "uploaded")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        # A timestamp without a zone is taken as UTC, so it compares with our own times.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Matrix(_Response):
    matrix: list[float] = Field(default_factory=list)


class VideoTrajectory(_Response):
    fps: float | None = None
    keyframes: list[Matrix] = Field(default_factory=list)


class LodAabb(_Response):
    min: list[float] = Field(default_factory=list)
    max: list[float] = Field(default_factory=list)


class SegmentModel(_Response):
    url: str
    size: int
    id: str | int | None = None
    aabb: LodAabb | None = None
    resolution_range: list[float] | None = None
    parent: str | int | None = None


class CaptureRepositionDataOutputSchema(_Response):
    rotation_w: float
    rotation_x: float
    rotation_y: float
    rotation_z: float
    scale: float


class CaptureMetadata(_Response):
    eid: str
    name: str
    profile_name: str
    lod: bool
    sid: str | None = None
    segmented_capture_eid: str | None = None
    hdr_mode: str | None = None
    nominal_ev: int | None = 0
    tmo_parameters: list[float] | None = None
    model_urls: list[str] = Field(default_factory=list)
    cameras: list[Matrix] = Field(default_factory=list)
    models: list[SegmentModel] = Field(default_factory=list)
    video_trajectory: VideoTrajectory | None = None
    reposition_data: CaptureRepositionDataOutputSchema | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models_keyed_by_profile(cls, value: Any) -> Any:
        # Public integrations read `models[<profile>]`; flatten that shape into the array the
        # reference documents (`results.read_models` keeps the profile when it matters).
        if isinstance(value, dict):
            return [m for v in value.values() for m in (v if isinstance(v, list) else [v])]
        return value


class TokenResponse(_Response):
    access_token: str
    expires_in: float = 3600
    token_type: str = "bearer"
