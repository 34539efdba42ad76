"""`teleport-sync check` and the `[preflight]` settings: exit codes, JSON, per-folder keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from teleport_sync.cli import main
from teleport_sync.config import ConfigError, Settings, load_settings
from teleport_sync.watch.folders import effective

from .media import have_tools, make_photos, make_scene, zip_folder


@pytest.fixture(scope="module")
def few_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("av", reason="the preflight extra is not installed")
    if not have_tools():
        pytest.skip("ffmpeg and zip are needed (Debian: apt-get install ffmpeg zip)")
    work = tmp_path_factory.mktemp("cli")
    make_photos(make_scene(work / "scene.png"), work / "photos", 8)
    return zip_folder(work / "photos", work / "few.zip")


def run(tmp_path: Path, *args: str, config: str = "") -> tuple[int, str]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    path.chmod(0o600)
    result = CliRunner().invoke(main, ["--config", str(path), *args])
    return result.exit_code, result.output


def test_check_json_says_verdict_figures_and_rules(few_zip: Path, tmp_path: Path) -> None:
    code, out = run(tmp_path, "check", "--json", str(few_zip))
    assert code == 0  # a warning is no failure: the daemon would upload it
    [result] = json.loads(out)
    assert result["path"] == str(few_zip) and result["verdict"] == "warn"
    assert result["reasons"] == ["8 images; at least 20 wanted (min_frames)"]
    frames = next(m for m in result["measures"] if m["measure"] == "frames")
    assert frames == {
        "measure": "frames",
        "value": 8,
        "shown": "8 images",
        "rule": "at least 20 wanted (min_frames)",
        "ok": False,
    }
    assert result["seconds"] >= 0


def test_check_exits_1_when_it_would_hold(few_zip: Path, tmp_path: Path) -> None:
    code, out = run(tmp_path, "check", str(few_zip), config='[preflight]\naction = "hold"\n')
    assert code == 1
    assert "hold" in out and "at least 20 wanted" in out


def test_check_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("av", reason="the preflight extra is not installed")
    code, out = run(tmp_path, "check", str(tmp_path / "nowhere.zip"))
    assert code == 2 and "no such file" in out


def test_folder_preflight_keys_override_only_what_they_set(tmp_path: Path) -> None:
    settings = Settings(
        preflight={"min_frames": 50, "blur_ratio": 0.5, "min_sharpness": 25},
        watch={
            "folder": [
                {"path": tmp_path / "drone", "preflight": {"action": "hold", "min_sharpness": 0}}
            ]
        },
    )
    drone = effective(settings, tmp_path / "drone" / "a.zip").preflight
    assert (drone.action, drone.min_frames, drone.blur_ratio) == ("hold", 50, 0.5)
    assert drone.min_sharpness == 0  # a foggy site's folder may turn the floor off
    other = effective(settings, tmp_path / "other.zip").preflight
    assert (other.action, other.min_sharpness) == ("warn", 25)


def test_a_misspelt_preflight_key_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[preflight]\nmin_frame = 3\n")
    with pytest.raises(ConfigError, match=r"\[preflight\] min_frame: unknown key"):
        load_settings(path, environ={})
