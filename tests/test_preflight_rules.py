"""The pre-flight rules on figures alone (pure Python): what a verdict says of its frames."""

from __future__ import annotations

from teleport_sync.config import PreflightSettings
from teleport_sync.preflight.frames import FrameMeasure
from teleport_sync.preflight.rules import Facts, judge


def frames(sharpness: list[float]) -> list[FrameMeasure]:
    return [
        FrameMeasure(i, f"IMG_{i:04d}.jpg", 1280, 720, sharpness=s, dhash=i * 0x9E3779B97F4A7C15)
        for i, s in enumerate(sharpness)
    ]


def test_an_ok_set_does_not_call_its_softest_frame_blurred() -> None:
    result = judge(PreflightSettings(), Facts("images", 24), frames([900.0] * 23 + [90.0]), [])
    assert result.verdict == "ok", result.reasons
    [worst] = result.worst
    assert worst.name == "IMG_0023.jpg"
    assert worst.why == "softer than the rest: sharpness 10% of the median"
    # The same frame in a set where the rule broke is called what it is.
    broken = judge(PreflightSettings(), Facts("images", 24), frames([900.0] * 18 + [90.0] * 6), [])
    assert broken.verdict == "warn"
    assert {w.why for w in broken.worst} == {"blurred: sharpness 10% of the median"}


def test_a_video_smeared_throughout_is_named_by_the_floor_not_the_ratio() -> None:
    facts = Facts("video", 300, 10.0, 30.0, 1280, 720)
    result = judge(PreflightSettings(), facts, frames([2.0, 1.8, 2.2, 1.9, 2.1] * 4), [])
    blur = next(m for m in result.measures if m.name == "blur")
    assert blur.ok is True  # relative to its own median, nothing stands out
    [reason] = result.reasons
    assert reason.startswith("most frames are smeared or blurred throughout: median sharpness 2.0")
    assert "(min_sharpness)" in reason
    # Half sharp, half smeared: the median is sharp, so the floor passes and the ratio speaks.
    half = judge(PreflightSettings(), facts, frames([2.0] * 10 + [900.0] * 10), [])
    assert next(m for m in half.measures if m.name == "sharpness").ok is True
    assert any("10 of 20 frames blurred" in r for r in half.reasons)
