"""What the decoders and measures hand the rules: plain figures per frame and per neighbour
pair, with no picture in them (so the rules stay pure Python and cheap to test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Below this phase-correlation peak two neighbours match nowhere (unrelated views score ~0.03;
# overlapping ones 0.1 and more).
MATCH_PEAK = 0.06


@dataclass(frozen=True, eq=False)
class FrameMeasure:
    """One frame's figures; `error` (and no figures) when it could not be decoded."""

    index: int
    name: str
    width: int = 0  # as stored (before scaling for analysis)
    height: int = 0
    sharpness: float = 0.0
    dark: float = 0.0
    bright: float = 0.0
    dhash: int = 0
    motion: Any = None  # the windowed 64x64 thumbnail for `shift`; dropped once used
    error: str | None = None
    skipped: str | None = None  # not judged (a format pre-flight cannot decode), and why
    # False when the frame examined before it is not its neighbour in the input (a sampled
    # zip's runs): the neighbour measures start afresh from it.
    follows: bool = True

    @property
    def judged(self) -> bool:
        return self.error is None and self.skipped is None

    def smeared(self, floor: float) -> bool:
        """Judged, and under the absolute sharpness `floor` (`[preflight] min_sharpness`; 0: no
        floor): smeared or blurred whatever the rest of its set looks like. The scale is
        `measures.sharpness` at the analysis size; the default's figures are in `measures`."""
        return self.judged and floor > 0 and self.sharpness < floor


@dataclass(frozen=True)
class Neighbours:
    """How frame `index` compares with the judged frame before it."""

    index: int
    distance: int  # bits in which their dHashes differ (0..64)
    moved: float  # how far the view moved, as a fraction of the frame
    peak: float  # how well they match at all (phase correlation peak, 0..1)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
