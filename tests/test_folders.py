"""Per-folder settings and sidecars, resolved for a path: pure reads of real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from teleport_sync.config import Settings
from teleport_sync.inputs import InputProblem
from teleport_sync.watch.folders import capture_plan, effective, read_sidecar, watch_roots


def settings(tmp_path: Path) -> Settings:
    return Settings(
        watch={  # type: ignore[arg-type]
            "paths": [tmp_path / "inbox"],
            "settle_seconds": 5,
            "folder": [
                {"path": tmp_path / "a", "settle_seconds": 60, "profiles": ["sogs-sh0"]},
                {"path": tmp_path / "a" / "b", "done_dir": tmp_path / "done", "quality": "sd"},
            ],
        },
        upload={"name_template": "{stem}"},  # type: ignore[arg-type]
    )


def test_the_most_specific_folder_wins_and_unset_keys_are_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    outer = effective(s, tmp_path / "a" / "x.zip")
    assert (outer.settle_seconds, outer.results.profiles, outer.folder) == (
        60,
        ["sogs-sh0"],
        tmp_path / "a",
    )
    inner = effective(s, tmp_path / "a" / "b" / "c" / "y.mp4")
    assert inner.folder == tmp_path / "a" / "b"
    assert (inner.settle_seconds, inner.results.quality) == (5, "sd")
    assert inner.results.profiles == ["ply"] and inner.actions.done_dir == tmp_path / "done"
    assert effective(s, tmp_path / "inbox" / "z.zip").folder is None
    assert watch_roots(s) == [tmp_path / "inbox", tmp_path / "a", tmp_path / "a" / "b"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name = [", "is not valid TOML"),
        ('colour = "red"', "unknown keys colour"),
        ('name = "{nope}"', "bad `name`: unknown field 'nope'"),
        ("training_parameters = 3", "not a table"),
        (
            "[training_parameters.modelv3]\nsplat_count = 1000000\n",
            "modelv3 needs all four keys; missing: training_resolution",
        ),
    ],
)
def test_a_bad_sidecar_names_itself_and_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    video = tmp_path / "walk.mp4"
    video.write_bytes(b"")
    (tmp_path / "walk.teleport.toml").write_text(text, encoding="utf-8")
    with pytest.raises(InputProblem) as caught:
        read_sidecar(video)
    assert problem in str(caught.value)
    assert "walk.teleport.toml" in str(caught.value) and "touch the input" in str(caught.value)
    assert caught.value.retryable is False


def test_a_sidecar_name_is_a_template_and_the_full_name_form_wins(tmp_path: Path) -> None:
    s = settings(tmp_path)
    video = tmp_path / "inbox" / "walk.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    assert capture_plan(s, video) == ("walk", None)
    (video.parent / "walk.teleport.toml").write_text('name = "by stem"', encoding="utf-8")
    (video.parent / "walk.mp4.teleport.toml").write_text('name = "{parent}: {name}"')
    assert capture_plan(s, video) == ("inbox: walk.mp4", None)
