"""The pose check's rules: its figures in, a verdict and reasons naming the cause out.

Pure over the figures a `PoseRun` carries, so each rule is tested on figures alone. The share
of frames posed in the largest model decides the verdict (`pose_min_posed` warns,
`pose_hold_posed` holds when `pose = "hold"`); the causes explain it, found in the order an
operator would fix them: frames smeared by motion, frames too dark or bright, bare surfaces,
no parallax, groups that never overlap, frames left out.
A check that could not run (not installed, crashed, overran) is said as a warning and never
holds a file by itself.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ...config import PreflightSettings
from ..rules import Measure, Verdict
from .runner import PoseRun

# A set whose median `streak_ratio` (preflight.measures) is under this is smeared by motion.
# Measured on the tests' rendered room at 360x270 (tests/rooms.py) and the pose bench's 1024 px
# frames: sharp views 0.73-0.90, bare walls 0.29-0.93 (median 0.76: a frame of one long edge
# can be low, a set is not), smeared 9 px sideways 0.26-0.38, 9 px diagonally 0.46-0.54, 31 px
# 0.12-0.29; a Gaussian blur (no direction) 0.7-0.94, which is the sharpness floor's to name.
# Here, not beside the measure: this module is imported by every upload (the gate), and the
# measures need numpy, which only the preflight extra brings.
SMEAR_RATIO = 0.45

NAMES_SHOWN = 4
# More than this share of the matched pairs related by a homography (a pure rotation, or one
# plane: COLMAP cannot tell them apart without a known focal length): no parallax. An orbit of
# a furnished room shows about a quarter such pairs (distant views sharing only a wall), a pan
# from a tripod about two thirds, a walk facing a flat wall four fifths.
ROTATION_SHARE = 0.5
# Points seen under a median widest angle below this (degrees) have no depth to speak of.
MIN_PARALLAX_DEGREES = 2.0
# A second group of matched frames this large is a separate walk, not a stray frame.
GROUP_MIN = 3
# A set whose median frame has this share of its pixels clipped is an exposure problem (the
# per-picture check's `clipped_fraction` default), whatever its feature counts say.
CLIPPED_SHARE = 0.3
# Bare frames are named when they are more than this share of the set.
BARE_SHARE = 0.2
# Frames with few features whose median longest side is under this are too small, not bare:
# the tests' textured room gives ~1000 features at 360x270 (its bare walls under 300, and
# those are bare), ~500 at 240x180, ~250 at 160x120 (a thumbnail, which is no bare wall).
SMALL_SIDE = 320


@dataclass(frozen=True)
class PoseJudgement:
    verdict: Verdict
    reasons: tuple[str, ...]
    measures: tuple[Measure, ...]
    figures: dict[str, Any]


def judge_pose(settings: PreflightSettings, run: PoseRun) -> PoseJudgement:
    if run.status != "done":
        return _not_judged(run)
    figures = run.figures
    frames = int(figures.get("frames") or 0)
    if figures.get("too_few") or not frames:
        why = f"only {frames} frame(s) could be read for it"
        return PoseJudgement(Verdict.WARN, (f"pose check: {why}",), (), _shown(run))
    posed = int(figures["posed"])
    share = posed / frames
    # A smeared or a dark frame has few features too: its cause is that, not a bare wall.
    surfaces = _smeared(figures) or _clipped(figures) or _bare(settings, figures)
    causes = [c for c in (surfaces, _groups(figures), _turned(figures)) if c]
    verdict = Verdict.OK
    if share < settings.pose_min_posed:
        verdict = Verdict.WARN
    if share < settings.pose_hold_posed and settings.pose == "hold":
        verdict = Verdict.HOLD
    reasons: list[str] = []
    if share < settings.pose_min_posed:
        reasons += causes
        reasons.append(_posed_reason(settings, figures, posed, frames))
    elif causes and _turned(figures):
        # Everything posed, but from one spot: COLMAP can pose a pan; a splat needs depth.
        reasons.append(_turned(figures) or "")
        verdict = Verdict.WARN
    measure = Measure(
        "posed",
        round(share, 3),
        f"posed {posed} of {frames} frames in the largest model",
        f"at least {settings.pose_min_posed:.0%} (pose_min_posed); "
        f'held under {settings.pose_hold_posed:.0%} with pose = "hold" (pose_hold_posed)',
        share >= settings.pose_min_posed,
    )
    return PoseJudgement(verdict, tuple(reasons), (measure,), _shown(run))


def _posed_reason(
    settings: PreflightSettings, figures: dict[str, Any], posed: int, frames: int
) -> str:
    left_out = list(figures.get("left_out") or [])
    if not posed:
        return f"no frame could be posed (0 of {frames}): Teleport would fail this capture"
    return (
        f"posed {posed} of {frames} (under {settings.pose_min_posed:.0%}, pose_min_posed); "
        f"left out {_named(left_out)}"
    )


def _smeared(figures: dict[str, Any]) -> str | None:
    streaks = list(figures.get("streaks") or [])
    if not streaks or statistics.median(streaks) >= SMEAR_RATIO:
        return None
    names = list(figures.get("names") or [])
    smeared = [
        names[i] if i < len(names) else str(i) for i, r in enumerate(streaks) if r < SMEAR_RATIO
    ]
    return (
        f"most frames are smeared by motion ({len(smeared)} of {len(streaks)} streaked along "
        f"one direction: {_named(smeared)}): the camera moved during the exposure; hold it "
        "steadier, move slower, or use a faster shutter (more light)"
    )


def _clipped(figures: dict[str, Any]) -> str | None:
    clipped = list(figures.get("clipped") or [])
    if not clipped or statistics.median(clipped) < CLIPPED_SHARE:
        return None
    names = list(figures.get("names") or [])
    dark = [
        names[i] if i < len(names) else str(i) for i, c in enumerate(clipped) if c >= CLIPPED_SHARE
    ]
    return (
        f"most frames are too dark or too bright to match ({len(dark)} of {len(clipped)} over "
        f"{CLIPPED_SHARE:.0%} crushed black or blown white: {_named(dark)}): fix the exposure "
        "or add light"
    )


def _bare(settings: PreflightSettings, figures: dict[str, Any]) -> str | None:
    floor = settings.pose_min_features
    counts = list(figures.get("features") or [])
    names = list(figures.get("names") or [])
    bare = [names[i] if i < len(names) else str(i) for i, c in enumerate(counts) if c < floor]
    if not floor or not counts or len(bare) <= BARE_SHARE * len(counts):
        return None
    sides = list(figures.get("sides") or [])
    if sides and statistics.median(sides) < SMALL_SIDE:
        return (
            f"{len(bare)} of {len(counts)} frames are too small to match (< {floor} features, "
            f"pose_min_features; median longest side {statistics.median(sides):g} px, under "
            f"{SMALL_SIDE}: {_named(bare)}): thumbnails or a web export? Use the full-size "
            "photos"
        )
    return (
        f"{len(bare)} of {len(counts)} frames show bare surfaces (< {floor} features, "
        f"pose_min_features: {_named(bare)}): flat, plain walls give nothing to match; "
        "add texture or shoot the detailed parts"
    )


def _turned(figures: dict[str, Any]) -> str | None:
    pairs = int(figures.get("verified_pairs") or 0)
    rotation = int(figures.get("rotation_only_pairs") or 0)
    parallax = figures.get("parallax_median")
    flat = parallax is not None and parallax < MIN_PARALLAX_DEGREES
    if pairs and (rotation / pairs > ROTATION_SHARE or flat):
        return (
            f"no parallax: the camera turned on the spot or faced one flat surface ({rotation} "
            f"of {pairs} matched pairs are a pure rotation or a plane); walk around the subject"
        )
    return None


def _groups(figures: dict[str, Any]) -> str | None:
    sizes = [s for s in figures.get("view_groups") or [] if s >= GROUP_MIN]
    if len(sizes) < 2:
        return None
    count = {2: "two", 3: "three", 4: "four"}.get(len(sizes), str(len(sizes)))
    return (
        f"{count} groups of frames never see the same surfaces ({' + '.join(map(str, sizes))}); "
        "shoot frames that bridge them"
    )


def _not_judged(run: PoseRun) -> PoseJudgement:
    what = {
        "missing": "not run",
        "timeout": "gave no verdict",
        "crashed": "gave no verdict",
        "failed": "gave no verdict",
    }[run.status]
    reason = f"pose check {what}: {run.detail}; the upload is not held for it"
    if run.status == "missing":
        reason = f"pose check not run: {run.detail}"
    # Said, never held for: a check that could not run is no evidence against the pictures.
    verdict = Verdict.OK if run.status == "missing" else Verdict.WARN
    figures = {"status": run.status, "detail": run.detail, "seconds": round(run.seconds, 2)}
    return PoseJudgement(verdict, (reason,), (), figures)


def _shown(run: PoseRun) -> dict[str, Any]:
    return {"status": run.status, **run.figures, "seconds": round(run.seconds, 2)}


def _named(names: list[str]) -> str:
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return ", ".join(names[:NAMES_SHOWN]) + more
