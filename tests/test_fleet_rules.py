"""The fleet's Prometheus rules (deploy/prometheus): Debian's promtool checks them and runs their
unit tests; every alert says what, where and which README row to read."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "teleport-sync.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "tests" / "rules_test.yml"
README = DEPLOY.parent / "README.md"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian's `prometheus` package; .ci/system-packages)",
)
# What a fleet needs told (issue 23), by alert name.
EXPECTED_ALERTS = {
    "TeleportSyncDown",
    "TeleportSyncAbsent",
    "TeleportSyncAuthFailing",
    "TeleportSyncFileFailing",
    "TeleportSyncFileHeld",
    "TeleportSyncUploadsStalled",
    "TeleportSyncProcessingStuck",
    "TeleportSyncCleanupBacklog",
    "TeleportSyncJournalDiskFull",
    "TeleportSyncUploadWindowClosedTooLong",
    "TeleportSyncWatchFolderUnwatched",
}


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=DEPLOY.parent
    )


@needs_promtool
def test_promtool_checks_the_rules_and_the_example_scrape_config() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    config = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_the_rules_unit_tests_pass_and_cover_every_alert() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]
    # Each alert is seen firing somewhere in the tests, not only staying quiet.
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in alerts()}


@needs_promtool
def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: the same file with one expected value changed does."""
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES, tmp_path / RULES.name)
    text = RULES_TEST.read_text(encoding="utf-8")
    assert "30m 0s." in text
    (tmp_path / "tests" / RULES_TEST.name).write_text(text.replace("30m 0s.", "31m 0s."))
    result = promtool("test", "rules", str(tmp_path / "tests" / RULES_TEST.name))
    assert result.returncode != 0
    assert "TeleportSyncUploadsStalled" in result.stdout + result.stderr


@pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool is not installed (Debian's `prometheus-alertmanager`; .ci/system-packages)",
)
def test_the_alertmanager_example_is_valid_and_pages_only_for_critical_alerts() -> None:
    assert AMTOOL is not None
    checked = subprocess.run(
        [AMTOOL, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def receiver(*labels: str) -> str:
        routed = subprocess.run(
            [AMTOOL, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert routed.returncode == 0, routed.stderr
        return routed.stdout.strip()

    for rule in alerts():
        labels = [f"alertname={rule['alert']}", f"severity={rule['labels']['severity']}"]
        urgent = rule["labels"]["severity"] == "critical"
        assert receiver(*labels, "instance=station-a:9464") == (
            "capture-ops-urgent" if urgent else "capture-ops"
        ), rule["alert"]


@pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (prometheus-alertmanager)")
def test_the_readme_alertmanager_snippet_is_a_valid_config(tmp_path: Path) -> None:
    assert AMTOOL is not None
    text = README.read_text(encoding="utf-8").split("**Alerts to Slack.**", 1)[1]
    snippet = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "alertmanager.yml").write_text(textwrap.dedent(snippet), encoding="utf-8")
    # The README's route is the shipped file's (who gets paged is decided in one place).
    shown = yaml.safe_load((tmp_path / "alertmanager.yml").read_text(encoding="utf-8"))
    shipped = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert shown["route"]["routes"] == shipped["route"]["routes"]
    checked = subprocess.run(
        [AMTOOL, "check-config", str(tmp_path / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_says_what_where_and_which_readme_row() -> None:
    rules = alerts()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    rows = troubleshooting_rows()
    for rule in rules:
        name = rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and rule["labels"]["severity"] in ("warning", "critical"), name
        where = "{{ $labels.job }}" if name == "TeleportSyncAbsent" else "{{ $labels.instance }}"
        assert notes["description"].startswith(f"{where}:"), name
        match = re.fullmatch(r'README\.md#troubleshooting \(row "(alert \w+)"\)', notes["runbook"])
        assert match, f"{name}: runbook {notes['runbook']!r}"
        row_name = match.group(1).removeprefix("alert ")
        assert any(f"alert `{row_name}`" in row for row in rows), (
            f"{name}: no troubleshooting row names alert `{row_name}`"
        )


def troubleshooting_rows() -> list[str]:
    """The first cells ("you see") of the README's troubleshooting table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ")]
