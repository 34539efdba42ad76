"""Pydantic models of the Teleport API schemas (see the API reference).

Pure data: this module imports nothing else of ours. Every response model tolerates unknown
fields (the API grows) and keeps `state` an open string, because the reference leaves
`CaptureState` open and new values must never crash the client.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
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


# Teleport's failure slugs (webhook docs, NOTES "What public clients show"; the list goes on:
# an unknown slug is shown as the text it is), and the emulator's, as what an operator can do.
FAILURE_ADVICE = {
    "NOT_ENOUGH_FRAMES": "the service found too few usable frames; capture more, with more "
    "overlap (or a longer video), and drop the new file in",
    "INPUT_VALIDATION_FAILED": "the service could not read the input; check that the zip holds "
    "JPEG or PNG photos, or that the video plays, then replace the file",
    "CONVERSION_FAILED": "the service could not convert the input; re-export the video as an "
    "H.264 MP4 (or the photos as JPEG) and replace the file",
    "POSE_REFINEMENT_FAILED": "the service could not work out where the camera was; capture "
    "again moving more slowly, with more overlap and more texture in view",
    "DENSIFICATION_FAILED": "the service posed the cameras but could not build the model; "
    "capture again with more overlap and steadier exposure",
    "NO_IMAGES": "the zip holds no photos; put the JPEG or PNG images in it and replace the file",
    "INVALID_ARCHIVE": "the file is not a readable zip; create it again and replace the file",
    "INVALID_VIDEO": "the file is not an MP4 video; export it as MP4 and replace the file",
}
_SLUG = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[_-][A-Za-z0-9]+)+$|^[A-Z][A-Z0-9]+$")


def failure_slug(reason: str | None) -> str | None:
    """The slug a failure reason starts with (`NOT_ENOUGH_FRAMES: ...` as `CaptureOutput.
    failure_reason` words it), upper case with `_`; None when it starts with plain words."""
    head = (reason or "").split(":", 1)[0].strip()
    if not head or not _SLUG.match(head):
        return None
    return head.upper().replace("-", "_")


def failure_advice(reason: str | None) -> str | None:
    """What an operator can do about a failure, for the slugs known; None for others (their
    text is shown as it is)."""
    slug = failure_slug(reason)
    return FAILURE_ADVICE.get(slug) if slug else None


def failure_sentence(reason: str | None) -> str:
    """`NOT_ENOUGH_FRAMES: the service found too few usable frames; capture more, ...`: the
    slug and the advice for known slugs; the server's own text for any other."""
    advice = failure_advice(reason)
    slug = failure_slug(reason)
    if advice is None or slug is None:
        return reason or "no reason given"
    words = (reason or "").split(":", 1)[1].strip() if ":" in (reason or "") else ""
    said = f" (the service said: {words})" if words and words.lower() not in advice else ""
    return f"{slug}: {advice}{said}"


# How many names a sentence lists before "and N more" (the JSON has them all).
NAMES_IN_SENTENCE = 8


@dataclass(frozen=True)
class TeleportPosed:
    """`status --json`'s `teleport_posed`: posed of frames, the frames left out by name.

    `frames` is None and `matched` false when the service's names cannot be matched to the
    input (a video whose frame names carry no number): then only `posed` is known.
    """

    posed: int
    frames: int | None
    left_out: list[str] = field(default_factory=list)
    matched: bool = True
    kind: str = "photos"  # "photos" | "video frames"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeleportPosed:
        known = {
            k: data[k] for k in ("posed", "frames", "left_out", "matched", "kind") if k in data
        }
        return cls(**known)

    def sentence(self) -> str:
        """ "Teleport posed 87 of 100 photos; left out: IMG_0412, IMG_0413, ... and 5 more"."""
        if not self.matched or self.frames is None:
            return (
                f"Teleport posed {self.posed} {self.kind}; their names cannot be matched to "
                "the input, so none is named"
            )
        if not self.left_out:
            return f"Teleport posed all {self.frames} {self.kind}"
        shown = [PurePosixPath(n).stem for n in self.left_out[:NAMES_IN_SENTENCE]]
        more = len(self.left_out) - len(shown)
        tail = f" and {more} more" if more > 0 else ""
        return (
            f"Teleport posed {self.posed} of {self.frames} {self.kind}; "
            f"left out: {', '.join(shown)}{tail}"
        )


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
    # Required by the reference; metadata v2 may not say it (then the download is not checked
    # against a size it does not know).
    size: int | None = None
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
