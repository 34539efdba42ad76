"""Settings per input: `[[watch.folder]]` overrides (the most specific folder wins) and a
sidecar `NAME.teleport.toml` next to an input, which may set its capture name and training
parameters.

A sidecar is looked for as `<file name>.teleport.toml` (`walk.mp4.teleport.toml`), then
`<stem>.teleport.toml` (`walk.teleport.toml`). Its keys: `name` (a template like
`name_template`, or plain text) and `training_parameters` (a table; replaces the folder's or
the default table whole). A sidecar that cannot be read, has unknown keys or parameters out of
range rejects its input, with the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    ActionsSettings,
    FolderSettings,
    PreflightSettings,
    ResultsSettings,
    Settings,
    check_name_template,
    training_parameter_problems,
)
from ..inputs import InputProblem, capture_name

SIDECAR_SUFFIX = ".teleport.toml"
SIDECAR_KEYS = ("name", "training_parameters")
ACTION_KEYS = ("done_dir", "failed_dir", "on_ready", "on_failed")
RESULTS_KEYS = ("profiles", "quality", "metadata", "crop_variant", "coord_system")


@dataclass(frozen=True)
class FileSettings:
    """The settings that apply to one input, defaults overridden by its folder."""

    name_template: str
    training_parameters: dict[str, Any] | None
    settle_seconds: float
    results: ResultsSettings
    actions: ActionsSettings
    folder: Path | None  # the `[[watch.folder]]` path that applies, or None
    preflight: PreflightSettings = field(default_factory=PreflightSettings)


def folder_for(settings: Settings, path: Path) -> FolderSettings | None:
    """The most specific `[[watch.folder]]` containing `path`, or None."""
    best: FolderSettings | None = None
    for folder in settings.watch.folder:
        root = folder.path.absolute()
        if path.absolute().is_relative_to(root) and (
            best is None or len(root.parts) > len(best.path.absolute().parts)
        ):
            best = folder
    return best


def effective(settings: Settings, path: Path) -> FileSettings:
    folder = folder_for(settings, path)
    if folder is None:
        return FileSettings(
            settings.upload.name_template,
            settings.upload.training_parameters,
            settings.watch.settle_seconds,
            settings.results,
            settings.actions,
            None,
            settings.preflight,
        )
    given = folder.model_dump(exclude_unset=True)
    results = settings.results.model_copy(update={k: given[k] for k in RESULTS_KEYS if k in given})
    actions = settings.actions.model_copy(
        update={
            k: given[k] for k in ("done_dir", "failed_dir", "on_ready", "on_failed") if k in given
        }
    )
    return FileSettings(
        given.get("name_template", settings.upload.name_template),
        given.get("training_parameters", settings.upload.training_parameters),
        given.get("settle_seconds", settings.watch.settle_seconds),
        results,
        actions,
        folder.path,
        _preflight_of(settings, folder),
    )


def _preflight_of(settings: Settings, folder: FolderSettings) -> PreflightSettings:
    """`[preflight]` with the keys the folder's `[watch.folder.preflight]` sets (only those)."""
    if folder.preflight is None:
        return settings.preflight
    given = folder.preflight.model_dump(exclude_unset=True)
    return settings.preflight.model_copy(update=given)


def watch_roots(settings: Settings) -> list[Path]:
    """`[watch] paths` and every `[[watch.folder]]` path, each once."""
    roots = list(settings.watch.paths)
    for folder in settings.watch.folder:
        if folder.path not in roots:
            roots.append(folder.path)
    return roots


@dataclass(frozen=True)
class Sidecar:
    path: Path
    name: str | None
    training_parameters: dict[str, Any] | None
    has_training_parameters: bool


def sidecar_path(path: Path) -> Path | None:
    for candidate in (
        path.with_name(path.name + SIDECAR_SUFFIX),
        path.with_name(path.stem + SIDECAR_SUFFIX),
    ):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> Sidecar | None:
    """The sidecar of input `path`, or None; raises InputProblem naming what is wrong."""
    found = sidecar_path(path)
    if found is None:
        return None

    def bad(why: str) -> InputProblem:
        return InputProblem(
            f"{path}: its sidecar {found} {why}; fix it (or remove it), then touch the input"
        )

    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise bad(f"is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise bad(f"has unknown keys {', '.join(unknown)} (it may set: name, training_parameters)")
    name = data.get("name")
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise bad("has a `name` that is not a non-empty string")
        try:
            check_name_template(name)
        except ValueError as exc:
            raise bad(f"has a bad `name`: {exc}") from None
    params = data.get("training_parameters")
    if params is not None and not isinstance(params, dict):
        raise bad("has `training_parameters` that is not a table")
    problems = training_parameter_problems(params, where="training_parameters.")
    if problems:
        raise bad("has " + "; ".join(problems))
    return Sidecar(found, name, params, "training_parameters" in data)


def capture_plan(settings: Settings, path: Path) -> tuple[str, dict[str, Any] | None]:
    """The capture name and training parameters for input `path`: folder, then sidecar."""
    applied = effective(settings, path)
    sidecar = read_sidecar(path)
    template = sidecar.name if sidecar and sidecar.name else applied.name_template
    params = applied.training_parameters
    if sidecar is not None and sidecar.has_training_parameters:
        params = sidecar.training_parameters
    return capture_name(template, path), params
