"""The check of one file: decode its frames, measure them and their neighbours, judge.

`check_file` is what `teleport-sync check` and the daemon's gate both run. The decoding
modules are imported here, inside the functions, once `deps.load_decoders` found the extra.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import PreflightSettings
from ..inputs import UNREADABLE, InputProblem, check_complete, input_format_for
from ..inputs.completeness import zip_entry_count
from ..inputs.frames import count_frames
from ..models import InputDataFormat
from .deps import Availability, load_decoders
from .frames import FrameMeasure, Neighbours, hamming
from .members import MAX_ENTRIES
from .pose import PoseJudgement
from .rules import Facts, Result, Verdict, judge


class NotComplete(InputProblem):
    """The file is not a whole .zip or .mp4: still being written, or broken (its caller tells
    which from how long it has been unchanged); `reason` is what is missing."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not complete yet: {reason}", retryable=True)
        self.reason = reason


class PreflightOff(Exception):
    """Pre-flight cannot run here (the extra is missing); the message says how to fix it."""


@dataclass(frozen=True)
class Checked:
    """A file's result, how long it took, and pictures of its worst frames (name, JPEG)."""

    result: Result
    seconds: float
    thumbnails: list[tuple[str, bytes]]

    def as_json(self) -> dict[str, Any]:
        return {**self.result.as_json(), "seconds": round(self.seconds, 3)}


def check_file(
    path: Path,
    settings: PreflightSettings,
    availability: Availability | None = None,
    *,
    pose: bool = True,
) -> Checked:
    """Judge the .zip or .mp4 at `path`. Raises PreflightOff, InputProblem (not an input) or
    OSError (cannot be read); a file that reads but does not decode is a result, with reasons."""
    found = availability or load_decoders()
    if not found.ok:
        raise PreflightOff(found.reason)
    started = time.monotonic()
    fmt = input_format_for(path)
    refuse_unusable(path)
    if fmt is InputDataFormat.BULK_IMAGES:
        result, thumbnails = _check_zip(path, settings, found)
    else:
        result, thumbnails = _check_video(path, settings)
    if settings.pose != "off" and pose:
        result = with_pose(result, check_pose(path, str(result.figures.get("kind")), settings))
    return Checked(result, time.monotonic() - started, thumbnails)


def check_pose(path: Path, kind: str, settings: PreflightSettings) -> PoseJudgement:
    """The pose check of one file (a child process; see `pose.runner`), judged."""
    from .pose import judge_pose, run_pose

    return judge_pose(settings, run_pose(path, kind, settings))


def with_pose(result: Result, pose: PoseJudgement) -> Result:
    """The per-picture result with the pose check's reasons, measures and figures added; the
    verdict is the stronger of the two."""
    order = [Verdict.OK, Verdict.WARN, Verdict.HOLD]
    verdict = max(result.verdict, pose.verdict, key=order.index)
    return replace(
        result,
        verdict=verdict,
        reasons=result.reasons + pose.reasons,
        measures=result.measures + pose.measures,
        figures={**result.figures, "pose": pose.figures},
    )


def refuse_unusable(path: Path) -> None:
    """Raise InputProblem, in the daemon's words, for what its intake would refuse or wait for
    (empty, a FIFO or a device, unreadable, not a whole .zip or .mp4): `check` and the daemon
    agree on every input, and nothing that is no input is decoded."""
    try:
        completeness = check_complete(path)
    except PermissionError:
        raise InputProblem(f"{path}: {UNREADABLE}", retryable=True) from None
    if completeness.state == "incomplete":
        raise NotComplete(path, completeness.reason)
    if not completeness.complete:
        raise InputProblem(f"{path}: {completeness.reason}")


def _check_zip(
    path: Path, settings: PreflightSettings, found: Availability
) -> tuple[Result, list[tuple[str, bytes]]]:
    from . import images

    entries = zip_entry_count(path)
    if entries is not None and entries > MAX_ENTRIES:  # counted from the end record alone
        problem = (
            f"holds {entries} entries, more than pre-flight reads from one archive's directory "
            f"({MAX_ENTRIES}); not judged"
        )
        return judge(settings, Facts("images", None, problem=problem), [], []), []
    counted = count_frames(path, InputDataFormat.BULK_IMAGES)
    selected: list[images.Selection] = []
    try:
        frames, pairs = walk(images.zip_frames(path, heif=found.heif, selected=selected))
    except zipfile.BadZipFile as exc:
        raise InputProblem(f"{path}: not a readable zip ({exc})") from None
    sampling = selected[0].sampling if selected else None
    figures = {"sampling": sampling} if sampling else None
    result = judge(settings, Facts("images", counted.frames), frames, pairs, figures=figures)
    names = [w.name for w in result.worst]
    pictures = zip(names, images.thumbnails(path, names), strict=True)
    return result, [(name, jpeg) for name, jpeg in pictures if jpeg]


def _check_video(path: Path, settings: PreflightSettings) -> tuple[Result, list[tuple[str, bytes]]]:
    from .video import VideoProblem, VideoSampler

    counted = count_frames(path, InputDataFormat.VIDEO)
    try:
        sampler = VideoSampler(path, settings.sample_frames)
    except VideoProblem as exc:
        facts = Facts("video", counted.frames, counted.duration_seconds, problem=str(exc))
        return judge(settings, facts, [], []), []
    try:
        pictures: dict[str, bytes] = {}

        def measured() -> Iterable[FrameMeasure]:
            for sample in sampler.samples():
                pictures[sample.measure.name] = sample.thumbnail  # a few KB per sample
                yield sample.measure

        frames, pairs = walk(measured())
        info = sampler.facts
        figures = {
            "codec": info.codec,
            "keyframes": info.keyframes,
            "sampling": _sampling(sampler.keyframes_only, info.keyframes, len(frames)),
        }
    finally:
        sampler.close()
    facts = Facts(
        "video",
        counted.frames or info.packets,
        counted.duration_seconds or info.duration_seconds,
        info.fps,
        info.width,
        info.height,
    )
    result = judge(settings, facts, frames, pairs, figures=figures)
    return result, [(w.name, pictures[w.name]) for w in result.worst if w.name in pictures]


def _sampling(keyframes_only: bool, keyframes: int, judged: int) -> str:
    if keyframes_only:
        return (
            f"{judged} keyframes only: its {keyframes} keyframes are so far apart that decoding "
            "between them would take longer than uploading the file"
        )
    return f"{judged} frames spread evenly"


def walk(frames: Iterable[FrameMeasure]) -> tuple[list[FrameMeasure], list[Neighbours]]:
    """The frames (their motion thumbnails dropped once used) and each judged frame compared
    with the judged frame before it."""
    from .measures import shift

    kept: list[FrameMeasure] = []
    pairs: list[Neighbours] = []
    before: FrameMeasure | None = None
    for frame in frames:
        if not frame.follows:
            before = None  # a sampled run starts: the frame before is not its neighbour
        if frame.judged:
            if before is not None:
                moved, peak = shift(before.motion, frame.motion)
                distance = hamming(before.dhash, frame.dhash)
                pairs.append(Neighbours(frame.index, distance, moved, peak))
            before = frame
        kept.append(replace(frame, motion=None))
    return kept, pairs
