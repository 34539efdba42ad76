"""Finished models on disk: where they go, how the metadata is read, and the one download path.

Layout (README "Results"): each input gets a folder named by its path below its watch root,
extension included, so `chair.zip` and `chair.mp4` never share one; inside, a folder per profile:

    <results>/<relative input path>/<profile>/model.ply | model.zip | 0.bin, 1.bin, ...
    <results>/<relative input path>/preview.png, preview.gif      ([results] previews)
    <results>/<relative input path>/cameras.json    (metadata v2: the cameras Teleport posed)
    <results>/<relative input path>/metadata.json   (metadata v2's answers, URLs without queries)

`plan_models` + `fetch_models` are the only way models are downloaded (daemon, `download`,
`upload --follow`); which metadata endpoint they come through (v2 or v1) is `metadata.py`'s.
"""

from __future__ import annotations

import grp
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pydantic

from ..api import (
    ApiError,
    TeleportClient,
    TransientError,
    account_of,
    metadata_v2_json,
    redact_url,
)
from ..logging import get_logger
from ..models import SegmentModel
from ..private import private_dirs, private_file
from .cameras import CAMERAS_FILE
from .metadata import FactStore, MetadataChoice, MetadataRoute, is_fallback, read_v2

log = get_logger("teleport_sync.results")

METADATA_FILE = "metadata.json"
# Profiles whose files are chunks: always numbered, even when there is one.
CHUNKED_PREFIX = "fragment-"


@dataclass(frozen=True)
class ModelOptions:
    """What the metadata request asks for besides the profile ([results] quality, lod, use_cdn;
    metadata, crop_variant, coord_system). The default asks v1 only; settings say `auto`."""

    quality: str = "hd"
    lod: bool | None = None
    use_cdn: bool | None = None
    metadata: MetadataChoice = field(default_factory=MetadataChoice)

    def v2_can_give(self) -> bool:
        """v2 takes none of v1's options: only their defaults come the same through it."""
        return self.quality == "hd" and not self.lod and self.use_cdn is not False


@dataclass(frozen=True)
class PlannedFile:
    profile: str
    model: SegmentModel
    target: Path


@dataclass
class ModelPlan:
    files: list[PlannedFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # Metadata v2's camera list (fetched into `folder`/cameras.json by `fetch_cameras`), the
    # endpoint each profile's models came through, and v2's answers as kept (metadata.json).
    folder: Path | None = None
    cameras_url: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    v2_answers: dict[str, Any] = field(default_factory=dict)
    # What the operator should know of how the models came (v2 down, so v1 was asked).
    notes: list[str] = field(default_factory=list)

    def by_profile(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for item in self.files:
            grouped.setdefault(item.profile, []).append(str(item.target))
        return grouped


def result_folder(results_dir: Path, input_path: Path, roots: list[Path]) -> Path:
    """The folder of one input's results, named by its path (extension included), unique.

    The path is taken below the outermost watch root holding the input, so a `[[watch.folder]]`
    inside a watched path changes nothing. With several separate roots it starts with the
    root's name (its whole path when two roots share a name), so `a/x.zip` and `b/x.zip` mostly
    never meet. An input under no root (`upload` of a file elsewhere) goes to its name alone,
    as a person would file it. Where two inputs still meet, the journal's claim of a folder per
    capture (`journal.claim_result_dir`) gives the later one a folder of its own.
    """
    absolute = Path(os.path.abspath(input_path))
    tops = _outermost([Path(os.path.abspath(r)) for r in roots])
    root = next((r for r in tops if r in absolute.parents), None)
    if root is None:
        return results_dir / absolute.name
    below = absolute.relative_to(root)
    if len(tops) == 1:
        return results_dir / below
    names = [r.name for r in tops]
    prefix = root.name if names.count(root.name) == 1 else root.relative_to(root.anchor)
    return results_dir / prefix / below


def _outermost(roots: list[Path]) -> list[Path]:
    """The roots not inside another root, without repeats, in their order."""
    unique = list(dict.fromkeys(roots))
    return [r for r in unique if not any(o in r.parents for o in unique)]


def file_names(profile: str, models: list[SegmentModel]) -> list[str]:
    """`model.<ext>` for a single-file profile; `0.<ext>`, `1.<ext>`, ... for chunks."""
    suffixes = [PurePosixPath(urlsplit(m.url).path).suffix or ".bin" for m in models]
    if len(models) == 1 and not profile.startswith(CHUNKED_PREFIX):
        return [f"model{suffixes[0]}"]
    return [f"{i}{suffix}" for i, suffix in enumerate(suffixes)]


def read_models(payload: dict[str, Any], profile: str) -> list[SegmentModel]:
    """The models of `profile` in a metadata answer of either shape.

    The reference documents `models` as an array of `SegmentModel` with one `profile_name`;
    public integrations read `models[<profile>]` as an object (a list for several chunks).
    """
    models = payload.get("models")
    if isinstance(models, dict):
        log.debug("metadata models: object keyed by profile", profile=profile, keys=sorted(models))
        entry = models.get(profile)
        items = entry if isinstance(entry, list) else [] if entry is None else [entry]
    elif isinstance(models, list):
        log.debug("metadata models: array of SegmentModel", profile=profile, count=len(models))
        named = [p.strip() for p in str(payload.get("profile_name") or "").split(",")]
        if models and named != [""] and profile not in named:
            log.warning(
                "the metadata names another profile; ignoring its models",
                asked=profile,
                profile_name=payload.get("profile_name"),
            )
            return []
        items = models
    elif models is None:
        items = []
    else:
        raise ApiError(f"the metadata's models are a {type(models).__name__}, not a list or object")
    try:
        return [SegmentModel.model_validate(item) for item in items]
    except pydantic.ValidationError as exc:
        raise ApiError(
            f"the metadata's models for {profile} did not match the API: {exc}"
        ) from None


def plan_models(
    client: TeleportClient,
    sid: str,
    profiles: Iterable[str],
    folder: Path,
    options: ModelOptions,
    facts: FactStore | None = None,
) -> ModelPlan:
    """One metadata request per profile (each answer names one profile): what goes where.

    Through v2 when `options.metadata` and the account allow it, else (or on v2's 403/404/405
    in `auto`) through v1; what the account answered is remembered in `facts`.
    """
    plan = ModelPlan(folder=folder)
    route = MetadataRoute(account_of(client), options.metadata, facts)
    use_v2 = route.ask_v2()
    refused: list[str] = []
    for profile in dict.fromkeys(profiles):
        models = None
        if use_v2 and not plan.notes and options.v2_can_give():
            payload = _ask_v2(client, sid, profile, options.metadata, plan, refused)
            if payload is not None:
                models = plan_v2_models(payload, profile)
                plan.versions[profile] = "v2"
        if models is None and options.metadata.mode == "v2" and options.v2_can_give():
            models = []  # v2 only: a profile v2 does not have is missing
        elif models is None:
            models = _models_v1(client, sid, profile, options)
            plan.versions[profile] = "v1"
        if not models:
            plan.missing.append(profile)
            continue
        for model, name in zip(models, file_names(profile, models), strict=True):
            plan.files.append(PlannedFile(profile, model, folder / profile / name))
    if use_v2 and plan.cameras_url is None and not (refused or plan.notes) and plan.files:
        # The models came through v1 (for v1's options): the camera list still through v2.
        _ask_v2(client, sid, plan.files[0].profile, options.metadata, plan, refused)
    if plan.v2_answers:
        route.learn("v2")
    elif refused and plan.files:
        route.learn("v1")
        log.warning("the account does not answer metadata v2; using v1", error=refused[0])
    return plan


def plan_v2_models(payload: dict[str, Any], profile: str) -> list[SegmentModel]:
    answer = read_v2(payload)
    return answer.models if answer.models is not None else read_models(payload, profile)


def _ask_v2(
    client: TeleportClient,
    sid: str,
    profile: str,
    choice: MetadataChoice,
    plan: ModelPlan,
    refused: list[str],
) -> dict[str, Any] | None:
    """A v2 answer for `profile` (its camera list and kept fields go into `plan`); None when
    v2 has nothing there (404) or the account has no v2 (403/405): with `auto` the caller
    asks v1, with `v2` a 404 is a missing profile and a 403/405 an error saying what to set."""
    try:
        payload = metadata_v2_json(
            client,
            sid,
            content_profile=profile,
            crop_variant=choice.crop_variant,
            coord_system=choice.coord_system,
        )
    except TransientError as exc:
        if choice.mode == "v2":
            raise
        # v2 is down (after the client's retries) while v1 may answer: the models matter
        # more than the camera list. Not remembered: the account does have v2.
        plan.notes.append(f"metadata v2 did not answer ({exc}); the models came through v1")
        log.warning("metadata v2 did not answer; using v1 for this capture", error=str(exc))
        return None
    except ApiError as exc:
        if not is_fallback(exc):
            raise
        if choice.mode == "v2" and exc.status != 404:
            raise ApiError(
                f"{exc}; the account does not answer metadata v2: set [results] metadata = "
                '"auto" (v2, else v1) or "v1"',
                status=exc.status,
            ) from None
        refused.append(str(exc))
        return None
    answer = read_v2(payload)
    plan.cameras_url = plan.cameras_url or answer.cameras_url
    plan.v2_answers[profile] = answer.kept
    return payload


def _models_v1(
    client: TeleportClient, sid: str, profile: str, options: ModelOptions
) -> list[SegmentModel]:
    payload = client.metadata_json(
        sid,
        profiles=[profile],
        quality=options.quality,
        lod=options.lod,
        use_cdn=options.use_cdn,
    )
    return read_models(payload, profile)


def fetch_models(client: TeleportClient, plan: ModelPlan, access: FileAccess | None = None) -> int:
    """Download every planned file (resuming any `.part`); returns the bytes written."""
    total = 0
    for item in plan.files:
        total += client.download(item.model.url, item.target, expected_size=item.model.size)
        if access is not None:
            access.apply(item.target)
        log.info(
            "model downloaded",
            profile=item.profile,
            model=str(item.target),
            bytes=item.model.size,
            source=redact_url(item.model.url),
        )
    return total


def fetch_cameras(
    client: TeleportClient, plan: ModelPlan, access: FileAccess | None = None
) -> list[str]:
    """Metadata v2's extras beside the models: the camera list as `cameras.json` (as the
    service sent it) and v2's answers as `metadata.json` (every field kept, URLs without their
    queries). Returns the paths written; nothing when the models came through v1."""
    if plan.folder is None:
        return []
    written: list[Path] = []
    if plan.v2_answers:
        target = plan.folder / METADATA_FILE
        private_dirs(target.parent)
        partial = target.with_name(target.name + ".part")
        private_file(partial)
        partial.write_text(json.dumps(plan.v2_answers, indent=2, sort_keys=True) + "\n")
        partial.replace(target)
        written.append(target)
    if plan.cameras_url:
        target = plan.folder / CAMERAS_FILE
        client.download(plan.cameras_url, target)
        written.append(target)
        log.info("camera list saved", cameras=str(target), source=redact_url(plan.cameras_url))
    for path in written:
        if access is not None:
            access.apply(path)
    return [str(p) for p in written]


@dataclass(frozen=True)
class FileAccess:
    """[results] mode and group, applied to each model and the folders made for it.

    Folders get an x bit wherever the mode has an r bit, or nobody could reach the files.
    """

    root: Path
    mode: int | None = None
    group: str | None = None

    def apply(self, path: Path) -> None:
        gid = self._gid()
        targets = [path, *self._folders(path)]
        for target in targets:
            is_dir = target != path
            if self.mode is not None and is_dir:
                # Keep a setgid bit: it is how a folder hands its group to new files.
                os.chmod(target, self._dir_mode() | (target.stat().st_mode & stat.S_ISGID))
            elif self.mode is not None:
                os.chmod(target, self.mode)
            if gid is not None:
                os.chown(target, -1, gid)

    def _folders(self, path: Path) -> list[Path]:
        """The folders from the results root down to `path`, ours only (others are left)."""
        root = self.root.absolute()
        folders = [p for p in path.absolute().parents if p == root or root in p.parents]
        return [p for p in folders if p.stat().st_uid == os.geteuid()]

    def _dir_mode(self) -> int:
        assert self.mode is not None
        return self.mode | ((self.mode & 0o444) >> 2)

    def _gid(self) -> int | None:
        if self.group is None:
            return None
        if re.fullmatch(r"\d+", self.group):
            return int(self.group)
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise OSError(
                f"no group {self.group!r} on this machine; check [results] group"
            ) from None


def fetch_previews(
    client: TeleportClient, eid: str, folder: Path, access: FileAccess | None = None
) -> list[str]:
    """The capture's largest preview image and its gif, saved as `preview.*` in `folder`."""
    capture = client.find_capture(eid)
    if capture is None:
        raise ApiError(f"capture {eid} is no longer in the account; cannot fetch its previews")
    wanted: list[tuple[str, str]] = []
    largest = _largest_preview(capture.preview_urls) or capture.preview_url
    if largest:
        wanted.append((largest, "preview"))
    if capture.gif_url:
        wanted.append((capture.gif_url, "preview"))
    written = []
    for url, stem in wanted:
        suffix = PurePosixPath(urlsplit(url).path).suffix or ".jpg"
        target = folder / f"{stem}{suffix}"
        client.download(url, target)
        if access is not None:
            access.apply(target)
        written.append(str(target))
    return written


def _largest_preview(urls: dict[str, str]) -> str | None:
    """The URL whose key ("897x1196") has the most pixels; unreadable keys count as 0."""

    def area(key: str) -> int:
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", key)
        return int(match[1]) * int(match[2]) if match else 0

    if not urls:
        return None
    return urls[max(urls, key=area)]


class WouldOverwrite(Exception):
    """`download` found model files already there and was not told `--force`."""


def capture_folder_name(name: str, eid: str) -> str:
    """A folder name for a capture: its name made safe for one path component, or its eid."""
    safe = re.sub(r"[/\\\0]", "_", name).strip().lstrip(".")
    return safe or eid


def download_capture(
    client: TeleportClient,
    eid: str,
    profiles: list[str],
    out_dir: Path,
    options: ModelOptions,
    *,
    force: bool = False,
    access: FileAccess | None = None,
) -> ModelPlan:
    """`download EID`: the models of a READY capture into `<out_dir>/<capture name>/<profile>/`.

    Refuses (before writing anything) when a file would be overwritten and `force` is false.
    """
    capture = client.find_capture(eid)
    if capture is None:
        raise ApiError(f"no capture {eid} in this account (see: teleport-sync captures list)")
    if capture.state.upper() != "READY" or not capture.sid:
        raise ApiError(f"capture {eid} is {capture.state}, not READY; nothing to download yet")
    folder = out_dir / capture_folder_name(capture.name, eid)
    plan = plan_models(client, capture.sid, profiles, folder, options)
    existing = [str(f.target) for f in plan.files if f.target.exists()]
    if existing and not force:
        raise WouldOverwrite(
            f"not overwriting {', '.join(existing)}; pass --force to replace, or --out elsewhere"
        )
    # Modes reach the capture's folder and below, never the user's --out folder itself.
    scoped = replace(access, root=folder) if access else None
    fetch_models(client, plan, scoped)
    fetch_cameras(client, plan, scoped)
    return plan
