"""Pre-flight's verdicts against Teleport's outcomes: was a `hold` right, did an `ok` fail?

Pure over `journal.FileOutcome` (what `Journal.outcomes` reads): each ended capture is counted
under pre-flight's verdict for the version uploaded (`ok`, `warn`, `hold` after an approve, or
`unchecked`) and under the pose check's own verdict when it ran, against READY or FAILED. The
misses are listed by path and slug: an `ok` that failed says a threshold may be too loose; a
`warn`/`hold` that came back READY, too tight. `teleport-sync check --report` prints it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..journal import FileOutcome

VERDICTS = ("ok", "warn", "hold", "unchecked")


@dataclass(frozen=True)
class Miss:
    path: str
    verdict: str
    state: str
    slug: str | None
    reasons: list[str]


@dataclass
class VerdictReport:
    """Counts of (verdict, outcome) for pre-flight as a whole and for the pose check alone."""

    ended: int = 0
    overall: Counter[tuple[str, str]] = field(default_factory=Counter)
    pose: Counter[tuple[str, str]] = field(default_factory=Counter)
    slugs: Counter[str] = field(default_factory=Counter)
    misses: list[Miss] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "ended": self.ended,
            "preflight": _table(self.overall),
            "pose": _table(self.pose),
            "failure_slugs": dict(self.slugs),
            "misses": [m.__dict__ for m in self.misses],
        }


def _table(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    return {
        verdict: {"READY": counts[(verdict, "READY")], "FAILED": counts[(verdict, "FAILED")]}
        for verdict in VERDICTS
        if counts[(verdict, "READY")] or counts[(verdict, "FAILED")]
    }


def verdict_report(outcomes: list[FileOutcome]) -> VerdictReport:
    report = VerdictReport()
    for outcome in outcomes:
        if outcome.state is None:
            continue  # still processing: no answer to compare with yet
        report.ended += 1
        verdict = outcome.preflight_verdict or "unchecked"
        report.overall[(verdict, outcome.state)] += 1
        if outcome.failure_slug:
            report.slugs[outcome.failure_slug] += 1
        pose = _pose_verdict(outcome.preflight_report)
        if pose is not None:
            report.pose[(pose, outcome.state)] += 1
        wrong = (verdict == "ok" and outcome.state == "FAILED") or (
            verdict in ("warn", "hold") and outcome.state == "READY"
        )
        if wrong:
            reasons = list((outcome.preflight_report or {}).get("reasons") or [])
            report.misses.append(
                Miss(outcome.path, verdict, outcome.state, outcome.failure_slug, reasons)
            )
    return report


def _pose_verdict(report: dict[str, Any] | None) -> str | None:
    """The pose check's own verdict from a journaled report: ok when it posed enough, warn/hold
    when it gave reasons; None when it did not run (off, not installed, crashed)."""
    pose = ((report or {}).get("figures") or {}).get("pose")
    if not pose or pose.get("status") != "done":
        return None
    posed = [m for m in (report or {}).get("measures", []) if m.get("measure") == "posed"]
    if posed and posed[0].get("ok") is False:
        return "hold" if report and report.get("verdict") == "hold" else "warn"
    return "ok"


def report_lines(report: VerdictReport) -> list[str]:
    """The report in words, one line each (what `check --report` prints)."""
    if not report.ended:
        return ["no capture has ended yet: nothing to compare pre-flight's verdicts with"]
    lines = [f"{report.ended} captures ended"]
    for title, counts in (("pre-flight", report.overall), ("pose check", report.pose)):
        for verdict, row in _table(counts).items():
            lines.append(
                f"{title} {verdict}: {row['READY']} READY, {row['FAILED']} FAILED"
                + _judgement(verdict, row)
            )
    if report.slugs:
        lines.append(
            "failures: " + ", ".join(f"{slug} x{n}" for slug, n in report.slugs.most_common())
        )
    for miss in report.misses:
        said = f" ({miss.slug})" if miss.slug else ""
        why = f"; it said: {miss.reasons[0]}" if miss.reasons else ""
        lines.append(f"  {miss.verdict} but {miss.state}{said}: {miss.path}{why}")
    return lines


def _judgement(verdict: str, row: dict[str, int]) -> str:
    total = row["READY"] + row["FAILED"]
    if verdict == "ok":
        return f" ({row['FAILED'] / total:.0%} of ok failed: tighten a threshold if this grows)"
    if verdict in ("warn", "hold"):
        return f" ({row['FAILED'] / total:.0%} right; loosen a threshold if few were)"
    return ""
