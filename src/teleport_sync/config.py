"""Settings: a TOML file, overridden by `TELEPORT_SYNC_*` environment variables, plus the secret.

Where the file is (first hit): `--config`, `$TELEPORT_SYNC_CONFIG`,
`$XDG_CONFIG_HOME/teleport-sync/config.toml`, `/etc/teleport-sync/config.toml`.

The client secret is read, first hit wins, from: the environment
(`TELEPORT_SYNC_API__CLIENT_SECRET`), `$CREDENTIALS_DIRECTORY/client_secret` (systemd
`LoadCredential=`), `[api] client_secret_file`, `[api] client_secret` in the config file. A file
that holds the secret and is readable by group or others is refused, as ssh refuses loose keys.

Every problem is a `ConfigError` whose message names the TOML key or the file, and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "TELEPORT_SYNC_"
SECRET_ENV = f"{ENV_PREFIX}API__CLIENT_SECRET"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
SYSTEM_CONFIG = Path("/etc/teleport-sync/config.toml")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and how to fix it."""


class _Section(BaseModel):
    # Unknown keys are almost always typos; say so instead of silently ignoring them.
    model_config = ConfigDict(extra="forbid")


class ApiSettings(_Section):
    base_url: str = "https://teleport.varjo.com"
    auth_url: str = "https://signin.teleport.varjo.com/oauth2/token"
    client_id: str = ""
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scope: str = "openid profile email"
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("base_url", "auth_url")
    @classmethod
    def _only_tls_off_loopback(cls, value: str) -> str:
        check_url_is_safe(value)
        return value.rstrip("/")


def check_training_parameters(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """`value` if it is within the documented ranges, else ValueError naming each key."""
    problems = training_parameter_problems(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


def check_name_template(value: str) -> str:
    try:
        value.format(name="n", stem="s", parent="p", ext="e")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"unknown field {exc} in template; use {{name}}, {{stem}}, {{parent}} or {{ext}}"
        ) from None
    return value


class PreflightSettings(_Section):
    """`[preflight]`: judge the pictures before an upload costs money (`teleport_sync.preflight`).

    Each threshold is one rule; 0 turns that rule off. A capture that breaks a rule gets a
    reason, and `action` says what a capture with reasons gets: uploaded with the reasons shown
    ("warn"), or kept back until `teleport-sync approve PATH` ("hold").
    """

    enabled: bool = True
    action: Literal["warn", "hold"] = "warn"
    # Frames decoded from a video, spread evenly over it (a zip's images are all judged).
    sample_frames: int = Field(default=60, ge=2, le=2000)
    # The API documents no minimum: this floor is ours (images in a zip, frames in a video).
    min_frames: int = Field(default=20, ge=0)
    # The shortest side, in pixels, below which the model trains on too little detail.
    min_short_side: int = Field(default=720, ge=0)
    # A frame is blurred when its sharpness is below this fraction of the set's median.
    blur_ratio: float = Field(default=0.35, ge=0, lt=1)
    # The absolute floor beside it: a set whose median sharpness (variance of the Laplacian at
    # 1000 pixels) is below this is smeared or blurred throughout. The default is
    # `preflight.measures.SHARPNESS_FLOOR` (why 10: there; a test keeps the two equal).
    min_sharpness: float = Field(default=10.0, ge=0)
    # A frame is badly exposed when this fraction of its pixels is crushed black or blown white.
    clipped_fraction: float = Field(default=0.3, ge=0, le=1)
    # Neighbours whose perceptual hashes (64 bits) differ in at most this many bits are one view.
    duplicate_distance: int = Field(default=3, ge=0, le=64)
    # Neighbour photos that moved more than this fraction of the frame (or match nowhere) leave
    # a gap the reconstruction cannot bridge.
    max_shift: float = Field(default=0.4, ge=0, le=1)
    # Blurred, badly exposed, duplicate frames and gaps may each be this share of the set.
    max_bad_fraction: float = Field(default=0.2, ge=0, le=1)
    min_video_seconds: float = Field(default=5.0, ge=0)
    min_fps: float = Field(default=15.0, ge=0)
    # The pose check (`preflight.pose`, the `pose` extra): a quick structure-from-motion pass
    # that tells whether the frames can be posed at all. "off", or the most it may say: "warn"
    # (reasons shown, uploaded) or "hold" (under `pose_hold_posed`, kept until approve).
    pose: Literal["off", "warn", "hold"] = "off"
    # Warn when the largest model poses fewer than this share of the frames (COLMAP-based
    # pipelines commonly expect 80 %+; Teleport trains only on the posed ones) ...
    pose_min_posed: float = Field(default=0.8, ge=0, le=1)
    # ... and hold (with pose = "hold") under this share: fewer than 40 % posed is a failure.
    pose_hold_posed: float = Field(default=0.4, ge=0, le=1)
    # The whole check's time limit (decoding, features, matching, mapping), and its memory.
    pose_seconds: float = Field(default=120.0, gt=0)
    pose_memory_mib: int = Field(default=1536, ge=0)
    # Frames reconstructed at most: a video is sampled at `pose_fps`, a large set spread down.
    pose_frames: int = Field(default=150, ge=2, le=2000)
    pose_fps: float = Field(default=2.0, gt=0)
    # Frames are downscaled to this longest side, with at most this many SIFT features each.
    # 1000, not 1024: a 4000-pixel sensor's JPEG then decodes at a quarter of its size, not half
    # (decoding 100 photos of 12 MP: 10 s -> 4 s).
    pose_max_side: int = Field(default=1000, ge=160)
    pose_features: int = Field(default=1024, ge=100)
    # A frame with fewer features shows a bare surface (nothing to match on).
    pose_min_features: int = Field(default=300, ge=0)
    # Sets up to this size (or whose order means nothing) are matched every pair with every
    # pair; longer ordered ones with their next `pose_overlap` neighbours plus loop closures.
    pose_exhaustive_up_to: int = Field(default=40, ge=0)
    pose_overlap: int = Field(default=6, ge=1)


class FolderSettings(_Section):
    """One `[[watch.folder]]`: a watched folder whose keys override the defaults below it."""

    path: Path
    name_template: str | None = None
    training_parameters: dict[str, Any] | None = None
    profiles: list[str] | None = None
    quality: Literal["sd", "hd"] | None = None
    metadata: Literal["auto", "v2", "v1"] | None = None
    crop_variant: str | None = None
    coord_system: str | None = None
    settle_seconds: float | None = Field(default=None, ge=0)
    done_dir: Path | None = None
    failed_dir: Path | None = None
    on_ready: list[str] | None = None
    on_failed: list[str] | None = None
    # `[watch.folder.preflight]`: the keys it sets replace `[preflight]`'s for this folder.
    preflight: PreflightSettings | None = None

    @field_validator("name_template")
    @classmethod
    def _template_fields_known(cls, value: str | None) -> str | None:
        return None if value is None else check_name_template(value)

    @field_validator("training_parameters")
    @classmethod
    def _training_parameters_in_range(cls, value: dict[str, Any] | None) -> Any:
        return check_training_parameters(value)


class WatchSettings(_Section):
    paths: list[Path] = Field(default_factory=list)
    recursive: bool = True
    settle_seconds: float = Field(default=5.0, ge=0)
    # QuickTime .mov is sent as its remux to MP4 (inputs/remux.py).
    include: list[str] = Field(default_factory=lambda: ["*.zip", "*.mp4", "*.mov"])
    exclude: list[str] = Field(default_factory=list)
    follow_symlinks: bool = False
    # A file that stays incomplete (no zip directory, no moov) this long after it stopped
    # changing is rejected as broken.
    incomplete_timeout_seconds: float = Field(default=600.0, gt=0)
    # `[[watch.folder]]` tables: more watched folders, each with its own overrides.
    folder: list[FolderSettings] = Field(default_factory=list)
    # A full rescan this often, for events that never came (0 = never).
    rescan_seconds: float = Field(default=3600.0, ge=0)
    # One live journal per folder (watch/claim.py): the owner renews its claim in the folder's
    # marker every quarter of this; another daemon takes the folder over a lease after the
    # owner stopped renewing it.
    claim_lease_seconds: float = Field(default=60.0, ge=0.5, le=3600)
    # A claim is confirmed (uploads from the folder begin) this long after it was written, if
    # the marker still names it: two stations that claim at the same instant then agree on
    # one owner (watch/claim.py). None: a twentieth of the lease, at most 3 s. 0: no wait (a
    # folder no other machine can reach). At most a quarter of the lease.
    claim_settle_seconds: float | None = Field(default=None, ge=0)
    # Also hold an OS lock (`flock`) on a claimed folder where it works. False: the marker
    # alone decides, as between two machines on a share (for a file system whose locks hang).
    claim_os_lock: bool = True

    @model_validator(mode="after")
    def _settle_within_lease(self) -> WatchSettings:
        settle = self.claim_settle_seconds
        if settle is not None and settle > self.claim_lease_seconds / 4:
            raise ValueError(
                f"[watch] claim_settle_seconds = {settle:g} is longer than a quarter of "
                f"claim_lease_seconds ({self.claim_lease_seconds:g} s): a claim waiting that "
                "long could look expired to another station; lower it or raise the lease"
            )
        return self


class UploadSettings(_Section):
    # Parts in flight per file to start with; widened while throughput grows (`adaptive`).
    concurrency: int = Field(default=8, ge=1, le=64)
    files_at_once: int = Field(default=2, ge=1, le=32)
    # Parts in flight across all files together, and how wide one file's window may grow: a
    # safety bound; the window itself stops at the width the path fills (engine/window.py).
    max_parts_in_flight: int = Field(default=128, ge=1, le=1024)
    # Widen each file's parts in flight while throughput grows, narrow on errors
    # (engine/window.py); false: exactly `concurrency`.
    adaptive: bool = True
    name_template: str = "{name}"
    training_parameters: dict[str, Any] | None = None
    # "off", a rate ("10M", bytes/s as rclone reads it) or an rclone timetable; "0" = closed.
    bwlimit: str = "off"
    # The same bytes as a file already uploaded (another name, another folder): "hold" until
    # `approve`, "warn" (uploaded, said in the log) or "allow".
    duplicates: Literal["warn", "hold", "allow"] = "hold"

    @field_validator("bwlimit")
    @classmethod
    def _bwlimit_readable(cls, value: str) -> str:
        from .limits import check_bwlimit  # pure, imports nothing of ours

        return check_bwlimit(value)

    @field_validator("training_parameters")
    @classmethod
    def _training_parameters_in_range(cls, value: dict[str, Any] | None) -> Any:
        return check_training_parameters(value)

    @field_validator("name_template")
    @classmethod
    def _template_fields_known(cls, value: str) -> str:
        return check_name_template(value)


# The documented ranges of `training_parameters.modelv3` (NOTES: all four keys together).
MODELV3_RANGES: dict[str, tuple[str, Any]] = {
    "splat_count": ("an integer from 500000 to 10000000", range(500_000, 10_000_001)),
    "training_resolution": ("1600, 2500 or 3200", (1600, 2500, 3200)),
    "spherical_harmonics_degrees": ("0 or 3", (0, 3)),
    "level_of_detail": ("true or false", (True, False)),
}


def training_parameter_problems(params: dict[str, Any] | None, where: str = "") -> list[str]:
    """Sentences naming each key of `training_parameters` outside its documented range."""
    if not params:
        return []
    problems = []
    modelv3 = params.get("modelv3")
    if modelv3 is not None:
        if not isinstance(modelv3, dict):
            return [f"{where}modelv3 must be a table of {', '.join(MODELV3_RANGES)}"]
        missing = [key for key in MODELV3_RANGES if key not in modelv3]
        if missing:
            problems.append(f"{where}modelv3 needs all four keys; missing: {', '.join(missing)}")
        for key, (wanted, allowed) in MODELV3_RANGES.items():
            value = modelv3.get(key)
            is_bool = isinstance(value, bool)
            ok = (
                is_bool
                if key == "level_of_detail"
                else (isinstance(value, int) and not is_bool and value in allowed)
            )
            if key in modelv3 and not ok:
                problems.append(f"{where}modelv3.{key} = {value!r} must be {wanted}")
        unknown = sorted(set(modelv3) - set(MODELV3_RANGES))
        if unknown:
            problems.append(f"{where}modelv3 has unknown keys: {', '.join(unknown)}")
    focus = params.get("focus_area")
    if focus is not None and not isinstance(focus, dict):
        problems.append(f"{where}focus_area must be a table")
    return problems


class BudgetSettings(_Section):
    # 0 = no limit. Counted per UTC day when an upload starts; a file over a limit is held
    # until `teleport-sync approve PATH`.
    max_frames_per_capture: int = Field(default=0, ge=0)
    max_frames_per_day: int = Field(default=0, ge=0)
    max_captures_per_day: int = Field(default=0, ge=0)
    # Only for the estimate shown in status: no price is built in.
    price_per_capture: float | None = Field(default=None, ge=0)
    price_per_frame: float | None = Field(default=None, ge=0)
    currency: str = ""


class PollSettings(_Section):
    interval_seconds: float = Field(default=30.0, gt=0)
    # A capture PROCESSING longer than this raises a `stuck` notification; 0 turns that off.
    stuck_after_seconds: float = Field(default=3600.0, ge=0)
    # A followed capture the listing does not show costs a full walk at most this often.
    full_walk_seconds: float = Field(default=3600.0, ge=0)
    # How much further back than our own create times a search of the listing looks.
    clock_skew_seconds: float = Field(default=86_400.0, ge=0)


def _default_journal_path() -> Path:
    # Under systemd `StateDirectory=` sets $STATE_DIRECTORY; elsewhere follow XDG.
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        return Path(state_dir.split(":")[0]) / "journal.sqlite3"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "teleport-sync" / "journal.sqlite3"


class JournalSettings(_Section):
    path: Path = Field(default_factory=_default_journal_path)


class ResultsSettings(_Section):
    download: bool = True
    dir: Path | None = None
    profiles: list[str] = Field(default_factory=lambda: ["ply"])
    quality: Literal["sd", "hd"] = "hd"
    lod: bool = False
    use_cdn: bool = True
    # Octal file mode of downloaded models ("0640"); folders get the matching x bits.
    mode: int | None = None
    group: str | None = None
    previews: bool = False
    # The most one download without a size in its metadata (a preview) may bring, and the free
    # space every download leaves on the results disk (`api.bounded`).
    max_download_mib: int = Field(default=8192, gt=0)
    min_free_mib: int = Field(default=256, ge=0)
    # Capture Metadata v2 (results/metadata.py): "auto" asks v2 and falls back to v1 (and
    # remembers an account without v2); "v2" or "v1" only. v2's own options, sent as given.
    metadata: Literal["auto", "v2", "v1"] = "auto"
    crop_variant: str | None = None
    coord_system: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        # TOML has 0o640; a string "0640" is what people write after chmod.
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError(f'{value!r} is not an octal mode such as "0640"') from None
        if isinstance(value, int) and not 0 <= value <= 0o777:
            raise ValueError(f"mode {value:o} is not a file mode between 0000 and 0777")
        return value


class ActionsSettings(_Section):
    done_dir: Path | None = None
    failed_dir: Path | None = None
    on_ready: list[str] | None = None
    on_failed: list[str] | None = None
    timeout_seconds: float = Field(default=300.0, gt=0)
    # Names of the daemon's environment variables hooks get besides the allow-list
    # (`results.actions.HOOK_ENVIRONMENT`); TELEPORT_SYNC_* is never passed on.
    pass_environment: list[str] = Field(default_factory=list)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsSettings(_Section):
    listen: str | None = None


class WebSettings(_Section):
    """The local web console (`teleport_sync.web`); off unless `listen` is set."""

    listen: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value:
            split_listen(value)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        # Anyone on the network could pause, forget or look at captures: ask for a token.
        if self.listen and self.token is None and self.token_file is None:
            host, _port = split_listen(self.listen)
            if not is_loopback_host(host):
                raise ValueError(
                    f"listen = {self.listen!r} is reachable from other machines, so set "
                    "[web] token or token_file (a long random string; `openssl rand -hex 32`), "
                    "or listen on 127.0.0.1"
                )
        return self

    def token_value(self) -> str | None:
        """The console's access token, read from `token_file` (refused if others can read it)."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is None:
            return None
        return _read_secret_file(self.token_file, "[web] token_file", "the web console's token")


class WebhooksSettings(_Section):
    """The receiver for Teleport's signed webhooks (off while `listen` is unset)."""

    listen: str | None = None
    path: str = "/teleport/webhook"
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f'{value!r} is not host:port, e.g. "127.0.0.1:8788"')
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f'{value!r} must start with /, e.g. "/teleport/webhook"')
        return value


NOTIFY_EVENTS = ("ready", "failed", "rejected", "held", "auth", "stuck")


class NotifyTarget(_Section):
    """One `[[notify]]` target: where events are POSTed, in which format, which events."""

    url: str
    format: Literal["json", "slack"] = "json"
    events: list[Literal["ready", "failed", "rejected", "held", "auth", "stuck"]] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS)
    )
    # Signs our own requests (X-Teleport-Sync-Signature), so the receiver can trust them.
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _only_tls_off_loopback(cls, value: str) -> str:
        check_url_is_safe(value)
        return value


class Settings(BaseSettings):
    """All configuration. Environment variables override the file, key by key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    api: ApiSettings = Field(default_factory=ApiSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    results: ResultsSettings = Field(default_factory=ResultsSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    notify: list[NotifyTarget] = Field(default_factory=list)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    preflight: PreflightSettings = Field(default_factory=PreflightSettings)

    # Where the file and the secret came from, for messages; not config keys.
    source_path: Path | None = Field(default=None, exclude=True)
    secret_source: str | None = Field(default=None, exclude=True)
    webhook_secret_source: str | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's content arrives as init kwargs; the environment wins over it.
        return (env_settings, init_settings)

    def client_secret_value(self) -> str:
        if self.api.client_secret is None:
            raise ConfigError(
                "no client secret configured: set TELEPORT_SYNC_API__CLIENT_SECRET, "
                "LoadCredential=client_secret:... (systemd), [api] client_secret_file, "
                "or [api] client_secret in the config file"
            )
        return self.api.client_secret.get_secret_value()

    def secret_values(self) -> list[str]:
        """Every secret this config holds (client secret, webhook signing secret, console
        token, notification signing secrets): each is masked wherever text is logged or
        journaled. A token file that cannot be read is left out (its own check says why)."""
        found = [self.api.client_secret, self.webhooks.secret, self.web.token]
        found += [target.secret for target in self.notify]
        values = [s.get_secret_value() for s in found if s is not None]
        if self.web.token is None and self.web.token_file is not None:
            with contextlib.suppress(ConfigError):  # its own check says why
                values += [t for t in [self.web.token_value()] if t]
        return values


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as (host, port); ValueError naming the fix."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'{listen!r} is not host:port (e.g. "127.0.0.1:8765")')
    return host.strip("[]") or "127.0.0.1", int(port)


def check_url_is_safe(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{url!r} uses plain http to a non-loopback host, which would send the secret and "
            "tokens in clear text; use https:// (plain http is allowed only to loopback)"
        )


def find_config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read, or None when no default location has one."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist (given with --config)")
        return explicit
    from_env = environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (given by ${CONFIG_ENV})")
        return path
    xdg = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "teleport-sync" / "config.toml", SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _refuse_if_exposed(path: Path, what: str, secret: str = "the client secret") -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds {secret} ({what}) but is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); fix it with: chmod 600 {path}"
        )


def _read_secret_file(path: Path, what: str, secret_name: str = "the client secret") -> str:
    try:
        _refuse_if_exposed(path, what, secret_name)
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {secret_name} from {path} ({what}): {exc}") from exc
    if not secret:
        raise ConfigError(f"{path} ({what}) is empty; put {secret_name} in it")
    return secret


def _render_validation_error(
    error: pydantic.ValidationError, source: str, variables: Mapping[str, str]
) -> str:
    """One line naming each bad key and where it came from: the file, or the environment
    variable that set it (the environment wins over the file, key by key)."""
    problems, sources = [], []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if len(loc) >= 2:
            key = f"[{loc[0]}] {'.'.join(loc[1:])}"
        else:
            key = f"[{loc[0]}]" if loc else "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        variable = _variable_for(item["loc"], variables)
        if variable is not None:
            if item["type"] == "extra_forbidden":
                msg = _unknown_variable_key(item["loc"])
            problems.append(f"environment variable {variable} ({key}): {msg}")
            sources.append("the environment")
            continue
        if item["type"] == "extra_forbidden":
            key, msg = _unknown_key(item["loc"], item.get("input"))
        problems.append(f"{key}: {msg}")
        sources.append(source)
    where = " and ".join(dict.fromkeys(sources))
    return f"invalid configuration in {where}: " + "; ".join(problems)


# `TELEPORT_SYNC_*` variables that are not settings (read elsewhere, or by the hashing code).
_NOT_SETTINGS = {"CONFIG", "NO_MD5_LANES"}


def _setting_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment's `TELEPORT_SYNC_*` variables: upper-case name -> the name as set."""
    return {
        name.upper(): name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper()[len(ENV_PREFIX) :] not in _NOT_SETTINGS
    }


def _variable_name(keys: list[str]) -> str:
    return ENV_PREFIX + "__".join(keys).upper()


def _variable_for(loc: tuple[Any, ...], variables: Mapping[str, str]) -> str | None:
    """The variable that set the key at `loc`: its own, or one that set a table above it as
    JSON (a list's items cannot be set one by one, so the walk stops at an index)."""
    keys: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        keys.append(str(part))
    for depth in range(len(keys), 0, -1):
        name = _variable_name(keys[:depth])
        if name in variables:
            return variables[name]
    return None


def _unknown_variable_key(loc: tuple[Any, ...]) -> str:
    *table, name = [str(part) for part in loc if not isinstance(part, int)]
    close = difflib.get_close_matches(name, sorted(_fields_of(tuple(table))), n=1, cutoff=0.6)
    if not close:
        close = [c for c in sorted(_fields_of(tuple(table))) if c.startswith(name)][:1]
    meant = f" (did you mean {_variable_name([*table, close[0]])}?)" if close else ""
    return f"unknown key{meant}; {EXAMPLE_HINT}"


def _refuse_unknown_variables(variables: Mapping[str, str]) -> None:
    """A variable shaped like a setting that names no section is a typo, not someone else's:
    say so (pydantic-settings would ignore it in silence)."""
    sections = set(Settings.model_fields) - _NOT_IN_FILE
    problems = []
    for upper, name in sorted(variables.items()):
        rest = upper[len(ENV_PREFIX) :].lower()
        section, nested, key = rest.partition("__")
        if section in sections:
            continue
        if nested:
            close = difflib.get_close_matches(section, sorted(sections), n=1, cutoff=0.6)
            meant = f" (did you mean {_variable_name([close[0], key])}?)" if close else ""
            problems.append(f"environment variable {name}: no section [{section}]{meant}")
            continue
        # TELEPORT_SYNC_API_CLIENT_ID: one underscore where the section ends.
        for known in sorted(sections):
            if rest.startswith(known + "_") and rest[len(known) + 1 :] in _fields_of((known,)):
                right = _variable_name([known, rest[len(known) + 1 :]])
                problems.append(
                    f"environment variable {name}: not a setting; did you mean {right} (two "
                    "underscores between the section and the key)?"
                )
    if problems:
        raise ConfigError("invalid configuration in the environment: " + "; ".join(problems))


def _unparsable_variable(error: SettingsError, variables: Mapping[str, str]) -> str:
    """pydantic-settings could not parse a variable for a list or table (it wants JSON)."""
    found = re.search(r'field "([^"]+)"', str(error))
    field = found.group(1) if found else ""
    names = [
        name
        for upper, name in sorted(variables.items())
        if upper.startswith(_variable_name([field])) and not _is_json(os.environ.get(name, ""))
    ]
    if not names:
        return f"invalid configuration in the environment: {error}"
    example = names[0]
    value = os.environ.get(example, "")
    return (
        f"invalid configuration in the environment: environment variable {', '.join(names)}: a "
        "list or a table is written as JSON, e.g. "
        f"{example}='{json.dumps([value]) if value else '[...]'}'"
    )


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


EXAMPLE_HINT = "`teleport-sync config example` prints every key, documented"


def _unknown_key(loc: tuple[Any, ...], value: Any) -> tuple[str, str]:
    """(where, what to do) for a key the settings do not have: the likely one meant."""
    *table, name = [str(part) for part in loc if not isinstance(part, int)]
    sections = set(Settings.model_fields) - _NOT_IN_FILE
    if not table:  # top level: a section, or a key that belongs in one
        if isinstance(value, dict):
            return f"[{name}]", f"unknown section{_did_you_mean(name, sections, '[{}]')}; " + (
                EXAMPLE_HINT
            )
        home = sorted(s for s in sections if name in _fields_of((s,)))
        if home:
            return name, f"is a key of [{home[0]}]: put it under that section; {EXAMPLE_HINT}"
        return name, f"unknown key{_did_you_mean(name, sections, '[{}]')}; {EXAMPLE_HINT}"
    where = f"[{'.'.join(table)}] {name}"
    if name in sections:
        return where, (
            f"[{name}] is a section of its own: write it as [{name}], not as a key here; "
            f"{EXAMPLE_HINT}"
        )
    return where, f"unknown key{_did_you_mean(name, _fields_of(tuple(table)), '`{}`')}; " + (
        EXAMPLE_HINT
    )


# Settings fields that are not sections of the file (filled in by `load_settings`).
_NOT_IN_FILE = {"source_path", "secret_source", "webhook_secret_source"}


def _fields_of(table: tuple[str, ...]) -> set[str]:
    """The keys of a section (`("watch", "folder")` for `[[watch.folder]]`), or none."""
    model: Any = Settings
    for part in table:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return set()
        model = field.annotation
        for inner in getattr(model, "__args__", ()):  # list[FolderSettings], X | None
            if hasattr(inner, "model_fields"):
                model = inner
    return set(getattr(model, "model_fields", {}))


def _did_you_mean(name: str, choices: set[str], shape: str) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    if not close:
        # `path` for `paths`: a prefix is as telling as a spelling.
        close = [c for c in sorted(choices) if c.startswith(name) or name.startswith(c)][:1]
    return f" (did you mean {shape.format(close[0])}?)" if close else ""


def load_settings(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the file and the environment, resolve the secret, validate; or raise ConfigError."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config_path, environ)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc

    source = str(path) if path else "the environment"
    # What pydantic-settings reads: the process's own environment.
    variables = _setting_variables(os.environ)
    _refuse_unknown_variables(variables)
    try:
        settings = Settings(**data)
    except pydantic.ValidationError as exc:
        raise ConfigError(_render_validation_error(exc, source, variables)) from None
    except SettingsError as exc:
        raise ConfigError(_unparsable_variable(exc, variables)) from None
    settings.source_path = path
    web_table = data.get("web")
    if isinstance(web_table, dict) and web_table.get("token") and path is not None:
        _refuse_if_exposed(path, "[web] token", "the web console's token")

    found = _resolve_secret(settings, data, path, environ)
    if found is not None:
        settings.api.client_secret = SecretStr(found[0])
        settings.secret_source = found[1]
    else:
        settings.api.client_secret = None
    _resolve_event_secrets(settings, data, path, environ)
    return settings


def _resolve_secret(
    settings: Settings, data: dict[str, Any], path: Path | None, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """The client secret and a description of where it came from, by the documented order."""
    from_env = environ.get(SECRET_ENV)
    if from_env:
        return from_env, f"${SECRET_ENV}"
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir:
        credential = Path(credentials_dir) / "client_secret"
        if credential.is_file():
            return _read_secret_file(credential, "systemd credential"), f"{credential}"
    secret_file = settings.api.client_secret_file
    if secret_file is not None:
        return _read_secret_file(secret_file, "[api] client_secret_file"), f"{secret_file}"
    api_table = data.get("api")
    in_file = api_table.get("client_secret") if isinstance(api_table, dict) else None
    if in_file and path is not None:
        _refuse_if_exposed(path, "[api] client_secret")
        return str(in_file), f"{path} ([api] client_secret)"
    return None


WEBHOOK_SECRET_ENV = f"{ENV_PREFIX}WEBHOOKS__SECRET"


def _resolve_event_secrets(
    settings: Settings, data: dict[str, Any], path: Path | None, environ: Mapping[str, str]
) -> None:
    """The webhook signing secret by the client secret's order and rules; notify secrets' file."""
    name = "the webhook signing secret"
    hooks = settings.webhooks
    found: tuple[str, str] | None = None
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY")
    credential = Path(credentials_dir) / "webhook_secret" if credentials_dir else None
    if environ.get(WEBHOOK_SECRET_ENV):
        found = environ[WEBHOOK_SECRET_ENV], f"${WEBHOOK_SECRET_ENV}"
    elif credential is not None and credential.is_file():
        found = _read_secret_file(credential, "systemd credential", name), str(credential)
    elif hooks.secret_file is not None:
        what = "[webhooks] secret_file"
        found = _read_secret_file(hooks.secret_file, what, name), str(hooks.secret_file)
    else:
        table = data.get("webhooks")
        in_file = table.get("secret") if isinstance(table, dict) else None
        if in_file and path is not None:
            _refuse_if_exposed(path, "[webhooks] secret", name)
            found = str(in_file), f"{path} ([webhooks] secret)"
    hooks.secret = SecretStr(found[0]) if found else None
    settings.webhook_secret_source = found[1] if found else None
    if hooks.listen and hooks.secret is None:
        raise ConfigError(
            "[webhooks] listen is set but there is no signing secret: set "
            f"{WEBHOOK_SECRET_ENV}, LoadCredential=webhook_secret:... (systemd), "
            "[webhooks] secret_file, or [webhooks] secret (from the Teleport Developer Dashboard)"
        )
    targets = data.get("notify")
    notify_secret_in_file = isinstance(targets, list) and any(
        isinstance(t, dict) and t.get("secret") for t in targets
    )
    if path is not None and notify_secret_in_file:
        _refuse_if_exposed(path, "[[notify]] secret", "a notification signing secret")
