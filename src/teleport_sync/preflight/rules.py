"""The rules: an input's figures in, its verdict out, each measure with the rule that judged it.

Pure Python over `frames.FrameMeasure` and `frames.Neighbours`, so each rule is tested on
figures alone. A broken rule gives a reason (a sentence with the figure, the rule and the key
that sets it); `[preflight] action` says what an input with reasons gets: `warn` (uploaded,
reasons shown) or `hold` (kept until `teleport-sync approve`). No reason: `ok`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..config import PreflightSettings
from .frames import MATCH_PEAK, FrameMeasure, Neighbours

WORST_SHOWN = 6
# Neighbours that moved less than this (one pixel of the 64-pixel motion thumbnails) stood still.
STILL = 1 / 64
NAMES_IN_A_REASON = 3


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    HOLD = "hold"


@dataclass(frozen=True)
class Measure:
    """One figure and the rule that judged it (`ok` None: not judged, and `rule` says why)."""

    name: str
    value: float | int | None
    shown: str
    rule: str
    ok: bool | None

    def as_json(self) -> dict[str, Any]:
        return {
            "measure": self.name,
            "value": self.value,
            "shown": self.shown,
            "rule": self.rule,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class WorstFrame:
    name: str
    why: str
    badness: float  # for ordering: larger is worse


@dataclass(frozen=True)
class Facts:
    """What the input says of itself, beside its decoded frames."""

    kind: str  # "images" (a zip) or "video"
    frames: int | None  # images in the zip, frames in the video
    duration_seconds: float | None = None
    fps: float | None = None
    width: int | None = None  # the video stream's size (photos: from the frames)
    height: int | None = None
    problem: str | None = None  # why nothing could be decoded at all


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    reasons: tuple[str, ...]
    measures: tuple[Measure, ...]
    worst: tuple[WorstFrame, ...]
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The `preflight` object of `status --json` and `check --json` (less its times)."""
        return {
            "verdict": str(self.verdict),
            "reasons": list(self.reasons),
            "measures": [m.as_json() for m in self.measures],
            "figures": self.figures,
            "worst_frames": [{"name": w.name, "why": w.why} for w in self.worst],
        }


def judge(
    settings: PreflightSettings,
    facts: Facts,
    frames: list[FrameMeasure],
    pairs: list[Neighbours],
    *,
    figures: dict[str, Any] | None = None,
) -> Result:
    """The verdict on one input from its facts, its frames' figures and its neighbours'."""
    judged = [f for f in frames if f.judged]
    measures = [
        _frame_count(settings, facts),
        _unreadable(frames, facts),
        _resolution(settings, facts, judged),
        *_video_rules(settings, facts),
    ]
    worst: list[WorstFrame] = [
        # The error is a phrase that follows the name ("cannot be decoded (...)", "not
        # decoded: ...", "inflates to 255 MiB, ..."), as in the unreadable reason.
        WorstFrame(f.name, f.error, 100.0)
        for f in frames
        if f.error
    ]
    # A frame crushed black or blown white has no edges to judge: it is badly exposed, and
    # left out of the blur rule (and of the median that rule compares with).
    exposed = [f for f in judged if not _badly_exposed(settings, f)]
    for rule, among in ((_blur, exposed), (_exposure, judged)):
        measure, bad = rule(settings, among)
        measures.append(measure)
        worst += bad
    measure, bad = _smear(settings, facts, exposed)
    measures.append(measure)
    worst += bad
    for pair_rule in (_duplicates, _gaps):
        measure, bad = pair_rule(settings, facts, judged, pairs)
        measures.append(measure)
        worst += bad
    reasons = tuple(f"{m.shown}; {m.rule}" for m in measures if m.ok is False)
    verdict = Verdict(settings.action) if reasons else Verdict.OK
    shown = sorted(worst, key=lambda w: -w.badness)[:WORST_SHOWN]
    all_figures = {
        "kind": facts.kind,
        "frames": facts.frames,
        "judged": len(judged),
        "unreadable": sum(1 for f in frames if f.error),
        "skipped": sum(1 for f in frames if f.skipped),
        "duration_seconds": facts.duration_seconds,
        "fps": facts.fps,
        "sharpness_median": (
            round(statistics.median(f.sharpness for f in exposed), 1) if exposed else None
        ),
        **(figures or {}),
    }
    return Result(verdict, reasons, tuple(measures), tuple(shown), all_figures)


def _frame_count(settings: PreflightSettings, facts: Facts) -> Measure:
    unit = "images" if facts.kind == "images" else "frames"
    floor = settings.min_frames
    if facts.frames is None:
        return Measure("frames", None, f"{unit}: not known", "the input does not say", None)
    rule = f"at least {floor} wanted (min_frames)" if floor else "no floor (min_frames = 0)"
    return Measure(
        "frames",
        facts.frames,
        f"{facts.frames} {unit}",
        rule,
        None if not floor else facts.frames >= floor,
    )


def _unreadable(frames: list[FrameMeasure], facts: Facts) -> Measure:
    bad = [f for f in frames if f.error]
    if not frames:
        what = "no image could be judged" if facts.kind == "images" else "no frame was decoded"
        source = "video" if facts.kind == "video" else "zip"
        what = f"the {source} {facts.problem}" if facts.problem else what
        return Measure("unreadable", 0, what, "every frame must decode", False)
    names = "; ".join(f"{f.name} {f.error}" for f in bad[:NAMES_IN_A_REASON])
    more = f" and {len(bad) - NAMES_IN_A_REASON} more" if len(bad) > NAMES_IN_A_REASON else ""
    shown = f"{len(bad)} of {len(frames)} cannot be decoded" + (f": {names}{more}" if bad else "")
    return Measure("unreadable", len(bad), shown, "every frame must decode", not bad)


def _resolution(settings: PreflightSettings, facts: Facts, judged: list[FrameMeasure]) -> Measure:
    floor = settings.min_short_side
    sizes = [(f.width, f.height) for f in judged] or (
        [(facts.width, facts.height)] if facts.width and facts.height else []
    )
    if not sizes:
        return Measure("resolution", None, "resolution: not known", "nothing decoded", None)
    width, height = min(sizes, key=lambda s: min(s))
    short = min(width, height)
    rule = f"the shortest side at least {floor} px (min_short_side)" if floor else "no floor"
    return Measure(
        "resolution",
        short,
        f"smallest frame {width}x{height}",
        rule,
        None if not floor else short >= floor,
    )


def _video_rules(settings: PreflightSettings, facts: Facts) -> list[Measure]:
    if facts.kind != "video":
        return []
    seconds, fps = facts.duration_seconds, facts.fps
    floor, fps_floor = settings.min_video_seconds, settings.min_fps
    length = Measure(
        "video_seconds",
        seconds,
        f"{seconds:.1f} s of video" if seconds is not None else "length: not known",
        f"at least {floor:g} s (min_video_seconds)",
        None if seconds is None or not floor else seconds >= floor,
    )
    rate = Measure(
        "fps",
        fps,
        f"{fps:.3g} frames per second" if fps else "frame rate: not known",
        f"at least {fps_floor:g} (min_fps)",
        None if not fps or not fps_floor else fps >= fps_floor,
    )
    return [length, rate]


def _share_rule(settings: PreflightSettings, count: int, out_of: int) -> tuple[str, bool | None]:
    limit = settings.max_bad_fraction
    share = count / out_of if out_of else 0.0
    return f"at most {limit:.0%} of them (max_bad_fraction)", (
        None if not out_of else share <= limit
    )


def _named(frames: list[str]) -> str:
    more = f" and {len(frames) - NAMES_IN_A_REASON} more" if len(frames) > NAMES_IN_A_REASON else ""
    return ", ".join(frames[:NAMES_IN_A_REASON]) + more


def _blur(
    settings: PreflightSettings, judged: list[FrameMeasure]
) -> tuple[Measure, list[WorstFrame]]:
    ratio = settings.blur_ratio
    if not ratio or len(judged) < 3:
        why = "off (blur_ratio = 0)" if not ratio else "needs 3 frames for a median"
        return Measure("blur", None, "blur: not judged", why, None), []
    median = statistics.median(f.sharpness for f in judged)
    blurred = sorted((f for f in judged if f.sharpness < ratio * median), key=lambda f: f.sharpness)
    limit, ok = _share_rule(settings, len(blurred), len(judged))
    shown = f"{len(blurred)} of {len(judged)} frames blurred"
    if blurred:
        shown += f" ({_named([f.name for f in blurred])})"
    rule = f"blurred = sharpness under {ratio:g} x the set's median {median:.0f} (blur_ratio); "
    # "Blurred" only when the rule broke: a few soft frames in a set that passes are shown
    # for a look, not called a problem.
    label = "blurred" if ok is False else "softer than the rest"
    worst = [
        WorstFrame(
            f.name,
            f"{label}: sharpness {f.sharpness / median:.0%} of the median",
            10 * (1 - f.sharpness / median),
        )
        for f in blurred
        if median > 0
    ]
    return Measure("blur", len(blurred), shown, rule + limit, ok), worst


def _smear(
    settings: PreflightSettings, facts: Facts, judged: list[FrameMeasure]
) -> tuple[Measure, list[WorstFrame]]:
    """The absolute floor: the relative blur rule cannot see a set blurred throughout (its
    median is as smeared as every frame), so the set's median is held to `min_sharpness`."""
    floor = settings.min_sharpness
    if not floor or not judged:
        why = "off (min_sharpness = 0)" if not floor else "nothing decoded"
        return Measure("sharpness", None, "sharpness: not judged", why, None), []
    median = statistics.median(f.sharpness for f in judged)
    rule = (
        f"the set's median sharpness must be at least {floor:g}, an absolute floor (min_sharpness)"
    )
    shown = f"median sharpness {median:.1f}"
    if median >= floor:
        return Measure("sharpness", round(median, 1), shown, rule, True), []
    smeared = sorted((f for f in judged if f.smeared(floor)), key=lambda f: f.sharpness)
    unit = "photos" if facts.kind == "images" else "frames"
    shown = (
        f"most {unit} are smeared or blurred throughout: {shown}, {len(smeared)} of "
        f"{len(judged)} under {floor:g} ({_named([f.name for f in smeared])})"
    )
    worst = [
        WorstFrame(
            f.name,
            f"smeared: sharpness {f.sharpness:.1f}, under the floor of {floor:g}",
            8 * (1 - f.sharpness / floor),
        )
        for f in smeared
    ]
    return Measure("sharpness", round(median, 1), shown, rule, False), worst


def _exposure(
    settings: PreflightSettings, judged: list[FrameMeasure]
) -> tuple[Measure, list[WorstFrame]]:
    limit_px = settings.clipped_fraction
    if not limit_px or not judged:
        return Measure("exposure", None, "exposure: not judged", "off or nothing decoded", None), []
    bad = [f for f in judged if _badly_exposed(settings, f)]
    limit, ok = _share_rule(settings, len(bad), len(judged))
    shown = f"{len(bad)} of {len(judged)} frames badly exposed"
    if bad:
        shown += f" ({_named([f.name for f in bad])})"
    rule = f"badly exposed = over {limit_px:.0%} of pixels crushed black or blown white "
    worst = [WorstFrame(f.name, _exposure_why(f, ok), 5 * max(f.dark, f.bright)) for f in bad]
    return Measure("exposure", len(bad), shown, rule + "(clipped_fraction); " + limit, ok), worst


def _badly_exposed(settings: PreflightSettings, frame: FrameMeasure) -> bool:
    limit = settings.clipped_fraction
    return bool(limit) and max(frame.dark, frame.bright) > limit


def _exposure_why(frame: FrameMeasure, rule_ok: bool | None) -> str:
    too = "too " if rule_ok is False else ""
    if frame.dark >= frame.bright:
        return f"{too}dark: {frame.dark:.0%} of pixels crushed black"
    return f"{too}bright: {frame.bright:.0%} of pixels blown white"


def _duplicates(
    settings: PreflightSettings,
    facts: Facts,
    judged: list[FrameMeasure],
    pairs: list[Neighbours],
) -> tuple[Measure, list[WorstFrame]]:
    bits = settings.duplicate_distance
    if not pairs:
        return Measure("duplicates", None, "duplicates: not judged", "needs 2 frames", None), []
    names = {f.index: f.name for f in judged}
    # The view did not move either: a slow, steady pan can look alike to a 64-bit hash.
    same = [p for p in pairs if p.distance <= bits and p.moved < STILL]
    limit, ok = _share_rule(settings, len(same), len(pairs))
    shown = f"{len(same)} of {len(pairs)} neighbours near-identical"
    if same:
        stood = _named([names.get(p.index, str(p.index)) for p in same])
        shown += f" ({stood}: the camera stood still?)"
    rule = (
        f"near-identical = perceptual hashes at most {bits} bits apart (duplicate_distance) "
        "and no measurable motion; "
    )
    worst = [
        WorstFrame(
            names.get(p.index, str(p.index)),
            f"a near-duplicate of the frame before ({p.distance} bits apart)",
            3.0,
        )
        for p in same
    ]
    return Measure("duplicates", len(same), shown, rule + limit, ok), worst


def _gaps(
    settings: PreflightSettings,
    facts: Facts,
    judged: list[FrameMeasure],
    pairs: list[Neighbours],
) -> tuple[Measure, list[WorstFrame]]:
    moved = [p.moved for p in pairs]
    median = statistics.median(moved) if moved else None
    figure = f"median move between neighbours {median:.0%} of the frame" if moved else "no pairs"
    if facts.kind != "images" or not settings.max_shift or not pairs:
        why = "photos only: a video's frames between the samples fill its gaps"
        why = why if facts.kind != "images" else "off (max_shift = 0) or fewer than 2 frames"
        return Measure("gaps", None, figure, why, None), []
    names = {f.index: f.name for f in judged}
    gaps = [p for p in pairs if p.moved > settings.max_shift or p.peak < MATCH_PEAK]
    limit, ok = _share_rule(settings, len(gaps), len(pairs))
    shown = f"{len(gaps)} of {len(pairs)} neighbours with little overlap; {figure}"
    if gaps:
        shown += f" (before {_named([names.get(p.index, str(p.index)) for p in gaps])})"
    rule = f"a gap = moved over {settings.max_shift:.0%} of the frame or no match (max_shift); "
    worst = [
        WorstFrame(names.get(p.index, str(p.index)), "little overlap with the photo before", 2.0)
        for p in gaps
    ]
    return Measure("gaps", len(gaps), shown, rule + limit, ok), worst
