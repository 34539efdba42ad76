"""The fleet's Grafana dashboard (deploy/grafana): a dashboard's JSON shape, one station or all
through the `instance` variable, and every metric its queries and the alert rules read is one a
real running daemon exports (or a recording rule of the shipped rules)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .helpers import wait_for
from .test_daemon import Running, free_port, settings_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "teleport-sync.json"
RULES = DEPLOY / "prometheus" / "teleport-sync.rules.yml"
# A name in a query: raw metrics are `teleport_sync_*`, recording rules `level:name:operation`.
NAME = re.compile(r"(?<![\w:$])([a-zA-Z_][\w]*(?::[\w]+)+|teleport_sync_\w+)")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def names_in(expr: str) -> set[str]:
    """Metric names an expression reads (label values in quotes are not names)."""
    return set(NAME.findall(re.sub(r'"[^"]*"', '""', expr)))


def test_names_in_reads_metrics_and_recording_rules_only() -> None:
    expr = (
        'sum by (instance) (rate(teleport_sync_bytes_uploaded_total{instance=~"$instance", '
        'phase="teleport_sync_x"}[$__rate_interval])) / on (instance) '
        "instance:teleport_sync_work_waiting:sum"
    )
    assert names_in(expr) == {
        "teleport_sync_bytes_uploaded_total",
        "instance:teleport_sync_work_waiting:sum",
    }


def test_the_dashboard_has_a_dashboards_shape() -> None:
    board = dashboard()
    assert board["uid"] == "teleport-sync-fleet" and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["time"]["from"].startswith("now-")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    station = variables["instance"]
    assert station["type"] == "query" and station["multi"] and station["includeAll"]
    assert station["query"]["query"] == "label_values(teleport_sync_build_info, instance)"

    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in ("stat", "timeseries", "table"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            # Every query follows the station picked (`up` included), so "one station" works.
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
    # Panels do not overlap.
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    read = {name for _, expr in panel_queries() for name in names_in(expr)}
    for wanted in (
        "teleport_sync_phase",  # queue by phase
        "teleport_sync_bytes_uploaded_total",  # throughput
        "teleport_sync_failures_total",  # failures
        "teleport_sync_files_uploaded_total",  # captures per day
        "teleport_sync_estimated_cost_total",  # spend, when prices are set
    ):
        assert wanted in read


# -- against a real daemon's /metrics ---------------------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=29, processing_delay_seconds=0.5)


def exported_names(text: str) -> set[str]:
    """Every series name an exposition can carry, samples or not (a labelled counter with no
    child yet shows only its HELP and TYPE)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
    return names


def test_every_metric_the_dashboard_and_rules_read_is_exported(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(emulator, tmp_path, metrics={"listen": f"127.0.0.1:{port}"})
    with Running(settings):
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: "teleport_sync_phase{" in httpx.get(url).text, 10, "the first report")
        text = httpx.get(url).text
    exported = exported_names(text)
    assert all(n.startswith("teleport_sync_") for n in exported)  # one prefix
    undocumented = [f.name for f in text_string_to_metric_families(text) if not f.documentation]
    assert undocumented == []  # every metric says what it counts (HELP)
    known = exported | recorded()
    missing = [
        f"{where}: {name}"
        for where, expr in panel_queries() + rule_exprs()
        for name in sorted(names_in(expr))
        if name not in known
    ]
    assert missing == []
    # And the recording rules the dashboard reads exist.
    assert {n for _, e in panel_queries() for n in names_in(e) if ":" in n} <= recorded()
