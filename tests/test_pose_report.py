"""`teleport-sync check --report`: the journal's pre-flight verdicts against Teleport's outcomes,
and `check --pose` on a rendered set (the pose check where the config leaves it off)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from teleport_sync.cli import main
from teleport_sync.journal import Journal
from teleport_sync.journal.states import Source
from teleport_sync.models import FileIdentity

from . import rooms


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "journal.sqlite3"}"\n')
    config.chmod(0o600)
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def _ended(
    journal: Journal, name: str, verdict: str | None, state: str, report: dict | None = None
) -> None:
    identity = FileIdentity(1, len(name), 3, 4, f"fp-{name}")
    record = journal.register(f"/inbox/{name}", identity, "bulk-images", name)
    if verdict is not None:
        body = report or {"verdict": verdict, "reasons": [], "measures": [], "figures": {}}
        journal.save_preflight(record.id, identity.fingerprint, verdict, body, [])
    journal.mark_uploaded(record.id, "UPLOADED", f"sid-{name}")
    failed = state == "FAILED"
    error = "POSE_REFINEMENT_FAILED: camera poses could not be recovered" if failed else None
    journal.observe_capture(record.id, state, source=Source.POLL, error=error)


def _posed(ok: bool, verdict: str) -> dict:
    return {
        "verdict": verdict,
        "reasons": [] if ok else ["posed 10 of 20 (under 80%, pose_min_posed); left out a.jpg"],
        "measures": [{"measure": "posed", "ok": ok}],
        "figures": {"pose": {"status": "done", "posed": 20 if ok else 10, "frames": 20}},
    }


def test_report_counts_verdicts_against_outcomes_and_names_the_misses(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        _ended(journal, "good.zip", "ok", "READY", _posed(True, "ok"))
        _ended(journal, "surprise.zip", "ok", "FAILED", _posed(True, "ok"))
        _ended(journal, "caught.zip", "warn", "FAILED", _posed(False, "warn"))
        _ended(journal, "cautious.zip", "warn", "READY", _posed(False, "warn"))
        _ended(journal, "blind.zip", None, "READY")
        still = journal.register("/inbox/busy.zip", FileIdentity(9, 9, 9, 9, "b"), "video", "b")
        journal.mark_uploaded(still.id, "UPLOADED", "sid-busy")  # not ended: not counted
    code, out = _run(tmp_path, "check", "--report", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ended"] == 5
    assert report["preflight"] == {
        "ok": {"READY": 1, "FAILED": 1},
        "warn": {"READY": 1, "FAILED": 1},
        "unchecked": {"READY": 1, "FAILED": 0},
    }
    assert report["pose"] == {"ok": {"READY": 1, "FAILED": 1}, "warn": {"READY": 1, "FAILED": 1}}
    assert report["failure_slugs"] == {"POSE_REFINEMENT_FAILED": 2}
    misses = {(m["path"], m["verdict"], m["state"]) for m in report["misses"]}
    assert misses == {
        ("/inbox/surprise.zip", "ok", "FAILED"),
        ("/inbox/cautious.zip", "warn", "READY"),
    }
    code, out = _run(tmp_path, "check", "--report")
    assert code == 0
    assert "5 captures ended" in out
    assert "pre-flight ok: 1 READY, 1 FAILED (50% of ok failed" in out
    assert "ok but FAILED (POSE_REFINEMENT_FAILED): /inbox/surprise.zip" in out


def test_report_without_a_journal_says_so(tmp_path: Path) -> None:
    code, out = _run(tmp_path, "check", "--report")
    assert code == 2 and "no journal at" in out


def test_check_pose_runs_the_pose_check_where_the_config_leaves_it_off(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    room = rooms.furnished_room(bare=True)
    photos = rooms.write_set(room, rooms.orbit(8), tmp_path / "bare", size=(240, 180))
    capture = rooms.zip_set(photos, tmp_path / "bare.zip")
    code, out = _run(tmp_path, "check", "--json", str(capture))
    assert "pose" not in json.loads(out)[0]["figures"]  # off by default
    code, out = _run(tmp_path, "check", "--pose", str(capture))
    assert code == 0  # --pose asks at most for a warning: nothing is held by hand
    assert "pose: posed 0 of 8" in out
    assert "no frame could be posed (0 of 8)" in out


def test_health_says_whether_the_pose_check_can_run_here(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap", reason="the pose extra: pip install '.[pose]'")
    config = tmp_path / "config.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.sqlite3"}"\n[preflight]\npose = "hold"\n')
    config.chmod(0o600)
    result = CliRunner().invoke(main, ["--config", str(config), "health", "--json"])
    report = json.loads(result.output)
    assert report["pose"] == {"mode": "hold", "installed": True, "reason": None}
    shown = CliRunner().invoke(main, ["--config", str(config), "health"]).output
    assert "checks:  pose check (hold) installed" in shown
