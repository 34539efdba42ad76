"""The README's quick start is what CI runs, and tells a newcomer what running it costs."""

from __future__ import annotations

import re
from pathlib import Path

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
