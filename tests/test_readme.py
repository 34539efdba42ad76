"""The README's quick start is what CI runs, and tells a newcomer what running it costs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).parent.parent


def quick_start() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_the_quick_starts_test_command_is_cis_and_says_how_long_it_takes() -> None:
    section = quick_start()
    commands = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert "pip install -e '.[test]' && pytest" in commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npip install -e '.[test]' && pytest\n" in ci  # word for word, as CI runs it
    after = section.split("pip install -e '.[test]' && pytest", 1)[1]
    assert re.search(r"takes about \d+ minutes", after), "say how long the whole suite takes"
    assert "pytest tests/test_config.py" in after  # and how to try one part instead


def readme_config_table() -> dict[str, set[str]]:
    """The README's table of config keys: section name -> the keys its row names."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.finditer(r"^\| `\[{1,2}([a-z_]+)\]{1,2}` \| (.*) \|$", text, re.M)
    return {row[1]: set(re.findall(r"`([a-z_]+)`", row[2])) for row in rows}


def test_the_readmes_config_table_names_every_key_of_every_section() -> None:
    from pydantic import BaseModel

    from teleport_sync.config import FolderSettings, Settings

    table = readme_config_table()
    for section, field in Settings.model_fields.items():
        if field.exclude:  # where the settings came from, not a key
            continue
        model = (get_args(field.annotation) or (field.annotation,))[0]  # list[NotifyTarget]
        assert issubclass(model, BaseModel)
        missing = set(model.model_fields) - {"folder"} - table.get(section, set())
        assert not missing, f"README's [{section}] row lacks {sorted(missing)}"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    per_folder = text.split("**Per-folder settings.**", 1)[1].split("override the defaults", 1)[0]
    missing = (
        set(FolderSettings.model_fields) - {"path"} - set(re.findall(r"`([a-z_]+)`", per_folder))
    )
    assert not missing, f"README's per-folder settings lack {sorted(missing)}"
