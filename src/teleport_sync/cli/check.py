"""`check`: pre-flight by hand. Judge photos and video frames as the daemon would before an
upload, with the settings that apply to each path (`[preflight]`, its `[[watch.folder]]`).

Exit codes: 0 when nothing would be held (every input ok or warn), 1 when some input would be
held or cannot be read, 2 for usage errors and when pre-flight cannot run (the extra missing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..logging import printable
from .app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, AppContext, fail, main, pass_app, stdout
from .upload import _expand

VERDICT_STYLE = {"ok": "green", "warn": "yellow", "hold": "red", "error": "red"}


@main.command(short_help="Pre-flight: judge photos and video frames before upload.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.option(
    "--pose",
    "pose",
    is_flag=True,
    help='Run the pose check (structure from motion) even where [preflight] pose = "off".',
)
@click.option(
    "--report",
    is_flag=True,
    help="Compare the journal's pre-flight verdicts with Teleport's outcomes (no PATH).",
)
@pass_app
def check(
    app: AppContext, paths: tuple[Path, ...], as_json: bool, pose: bool, report: bool
) -> None:
    """Judge .zip, .mp4 and .mov files (or those below folders): frame count, resolution, blur,
    exposure, near-duplicates, gaps, video length and rate. Nothing is uploaded or journaled.

    Each input gets a verdict: ok, warn (it would be uploaded, with the reasons shown) or hold
    (it would wait for `teleport-sync approve`), with every figure, the rule that judged it,
    and its worst frames by name. With --pose (or `[preflight] pose` on), also whether the
    frames can be posed: a quick structure-from-motion pass in a child process.

    With --report: over the journal, how often a warn or hold was right and how often an ok
    failed (pre-flight's verdict against READY or FAILED, and the pose check's alone).
    """
    from ..config import ConfigError

    if report:
        _report(app, as_json)
    if not paths:
        fail("give the files or folders to check (or --report)", EXIT_USAGE)
    from ..preflight import load_decoders

    try:
        settings = app.settings
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    found = load_decoders()
    if not found.ok:
        fail(f"pre-flight cannot run: {found.reason}", EXIT_USAGE)
    if pose:
        from ..preflight.pose import pose_available

        # Asked for by name, so its absence is an answer of its own (exit 2, as for the
        # preflight extra), not a warning among the reasons; `[preflight] pose` in the config
        # keeps the daemon's way: a warn reason that never blocks.
        if missing := pose_available():
            fail(f"check --pose cannot run: {missing}", EXIT_USAGE)
    files = _expand(paths)
    # A FIFO or a device is there, and gets its verdict below in the daemon's words.
    missing = [str(p) for p in files if not p.exists() or p.is_dir()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", EXIT_USAGE)
    results = [_check_one(settings, path.absolute(), pose) for path in files]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        _print(results)
    held = any(r["verdict"] in ("hold", "error") for r in results)
    raise SystemExit(EXIT_FAILED if held else EXIT_OK)


def _check_one(settings: Any, path: Path, pose: bool = False) -> dict[str, Any]:
    """One input's `preflight` object (as in `status --json`), with its path; or its error."""
    from ..inputs import InputProblem
    from ..preflight.check import NotComplete, check_file
    from ..watch.folders import effective
    from .upload import unfinished_or_broken

    applied = effective(settings, path).preflight
    if pose and applied.pose == "off":
        applied = applied.model_copy(update={"pose": "warn"})
    try:
        checked = check_file(path, applied)
    except NotComplete as exc:
        # In `upload`'s words: a file named here that stopped changing is broken, not copying.
        why = unfinished_or_broken(path, exc.reason, settings.watch.settle_seconds)
        return {"path": str(path), "verdict": "error", "reasons": [why]}
    except InputProblem as exc:
        return {"path": str(path), "verdict": "error", "reasons": [str(exc)]}
    except OSError as exc:
        return {"path": str(path), "verdict": "error", "reasons": [f"{path}: cannot read: {exc}"]}
    out = {"path": str(path), **checked.as_json()}
    if not applied.enabled:
        out["note"] = "[preflight] enabled = false for this path: the daemon would not check it"
    return out


def _print(results: list[dict[str, Any]]) -> None:
    for result in results:
        style = VERDICT_STYLE.get(result["verdict"], "")
        stdout.print(
            f"[bold]{_shown(result['path'])}[/]: [{style}]{result['verdict']}[/]", highlight=False
        )
        for reason in result.get("reasons", []):
            stdout.print(f"  reason: {_shown(reason)}", highlight=False)
        if result.get("measures"):
            stdout.print(_measures_table(result), highlight=False)
        pose = (result.get("figures") or {}).get("pose")
        if pose and not any(str(pose.get("detail")) in r for r in result.get("reasons", [])):
            stdout.print(f"  pose: {_shown(_pose_line(pose))}", highlight=False)
        sampling = (result.get("figures") or {}).get("sampling")
        if sampling:
            stdout.print(f"  sampled: {_shown(sampling)}", highlight=False)
        for worst in result.get("worst_frames", []):
            stdout.print(f"  worst: {_shown(worst['name'])}: {_shown(worst['why'])}")
        if result.get("note"):
            stdout.print(f"  note: {_shown(result['note'])}")


def _shown(text: object) -> str:
    """Text for the terminal: a member's name is the zip's to choose, and a newline or an
    escape sequence in it must not forge a `reason:` line or move the cursor (each reason stays
    one line, its controls shown as `\\n`, `\\x1b`), nor read as rich markup."""
    return escape(printable(str(text)))


def _measures_table(result: dict[str, Any]) -> Table:
    table = Table("measure", "figure", "rule", "", box=None, padding=(0, 1))
    for m in result["measures"]:
        mark = {True: "[green]ok[/]", False: "[red]no[/]", None: "[dim]-[/]"}[m["ok"]]
        table.add_row(m["measure"], _shown(m["shown"]), _shown(m["rule"]), mark)
    return table


def _pose_line(pose: dict[str, Any]) -> str:
    if pose.get("status") != "done":
        return f"not judged ({pose.get('status')}): {pose.get('detail')}"
    if pose.get("too_few"):
        return f"{pose.get('frames')} frame(s) read: too few to reconstruct"
    pieces = pose.get("pieces") or []
    shape = "one piece" if len(pieces) == 1 else f"pieces of {' + '.join(map(str, pieces))}"
    if not pieces:
        shape = "no model"  # nothing posed: "pieces of " with nothing after read as a slip
    return (
        f"posed {pose.get('posed')} of {pose.get('frames')} ({shape}), "
        f"{pose.get('points')} points, {pose.get('matching')} matching of "
        f"{pose.get('pairs')} pairs, {pose.get('seconds')} s"
    )


def _report(app: AppContext, as_json: bool) -> None:
    from ..daemon.compose import open_journal
    from ..status.verdicts import report_lines, verdict_report

    settings = app.settings
    if not settings.journal.path.exists():
        fail(f"no journal at {settings.journal.path}: nothing has been uploaded yet", EXIT_USAGE)
    with open_journal(settings) as journal:
        report = verdict_report(journal.outcomes())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report_lines(report):
            stdout.print(escape(line), highlight=False)
    raise SystemExit(EXIT_OK)
