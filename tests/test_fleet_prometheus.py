"""A fleet watched by a real Prometheus: Debian's `prometheus` binary on loopback scrapes two
real daemons (each its own journal and `[metrics] listen`, one emulated account), evaluates the
shipped rules with their `for:` durations shortened, and raises the alerts the faults call for:
the station whose token is refused, and the station that stops. Debian's Alertmanager, with
the shipped config, routes them to Slack: a loopback sink that records what Slack would get."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import yaml

from teleport_sync.config import Settings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .helpers import MIB, make_zip, set_knobs, wait_for
from .sink import Sink
from .test_daemon import Running, free_port, settings_for
from .test_fleet_dashboard import panel_queries

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "teleport-sync.rules.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus or its alertmanager is not installed (Debian's `prometheus` and "
    "`prometheus-alertmanager`; .ci/system-packages installs them)",
)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Short-lived tokens: a station asks for a new one within a second, so a refused secret
    # is met at its next upload rather than in an hour.
    return EmulatorConfig(seed=31, chunk_size=5 * MIB, token_ttl_seconds=2.0)


def fast_rules(path: Path) -> Path:
    """The shipped rules with every `for:` at 1 s: the same expressions, alerting in seconds."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return path


class Server:
    """A Debian binary (prometheus, alertmanager) on 127.0.0.1, its log in its home folder."""

    def __init__(self, binary: str, home: Path) -> None:
        home.mkdir()
        self.binary = binary
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.log = (self.home / "server.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, *self.arguments()], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for(self._ready, 30, f"{Path(self.binary).name} to be ready")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError((self.home / "server.log").read_text())
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Alertmanager(Server):
    """The shipped Alertmanager config, its Slack webhook URL pointed at `slack` and its
    waits cut to a second; no cluster port (gossip would listen on every address)."""

    def __init__(self, home: Path, slack: str) -> None:
        super().__init__(ALERTMANAGER or "", home)
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
        (home / "slack-webhook-url").write_text(slack, encoding="utf-8")
        for receiver in config["receivers"]:
            for slack_config in receiver["slack_configs"]:
                slack_config["api_url_file"] = str(home / "slack-webhook-url")
        config["route"].update(group_wait="1s", group_interval="1s")
        (home / "alertmanager.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.home / 'alertmanager.yml'}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]


class Prometheus(Server):
    """1 s scrapes and evaluations of the stations, the shipped rules with `for:` at 1 s."""

    def __init__(self, home: Path, targets: list[str], alertmanager: str) -> None:
        super().__init__(PROMETHEUS or "", home)
        every = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        config = {
            "global": every,
            "rule_files": [str(fast_rules(home / "rules.yml"))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [
                {"job_name": "teleport-sync", "static_configs": [{"targets": targets}]}
            ],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.home / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def target_health(self) -> dict[str, str]:
        active = self.api("targets")["activeTargets"]
        return {t["labels"]["instance"]: t["health"] for t in active}

    def firing(self, alertname: str) -> set[str]:
        """The instances `alertname` fires for now."""
        return {
            a["labels"].get("instance", "")
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        }


def station(emulator: EmulatorServer, home: Path) -> tuple[Settings, str]:
    """A capture station: its own inbox, journal and metrics address."""
    home.mkdir()
    address = f"127.0.0.1:{free_port()}"
    return settings_for(emulator, home, metrics={"listen": address}), address


@pytest.fixture
def stations(emulator: EmulatorServer, tmp_path: Path) -> Iterator[list[tuple[Running, str]]]:
    with ExitStack() as stack:
        running = []
        for name in ("station-a", "station-b"):
            settings, address = station(emulator, tmp_path / name)
            # Authentication is tried again within a second once it fails (default: 30 s).
            daemon = stack.enter_context(Running(settings, auth_backoff=(0.5, 1.0)))
            running.append((daemon, address))
        yield running


def test_prometheus_scrapes_the_fleet_and_alerts_on_the_failing_station(
    emulator: EmulatorServer, tmp_path: Path, stations: list[tuple[Running, str]]
) -> None:
    (a, a_address), (b, b_address) = stations
    with ExitStack() as stack:
        slack = stack.enter_context(Sink())
        alertmanager = stack.enter_context(Alertmanager(tmp_path / "alertmanager", slack.url))
        prometheus = stack.enter_context(
            Prometheus(
                tmp_path / "prometheus", [a_address, b_address], f"127.0.0.1:{alertmanager.port}"
            )
        )
        wait_for(
            lambda: prometheus.target_health() == {a_address: "up", b_address: "up"},
            20,
            "both stations scraped",
        )
        wait_for(
            lambda: len(prometheus.api("query", query="teleport_sync_auth_ok == 1")["result"]) == 2,
            20,
            "both stations authenticated",
        )
        # Every dashboard query is PromQL this Prometheus accepts (variables filled in).
        for title, expr in panel_queries():
            query = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
            assert prometheus.api("query", query=query)["resultType"] in ("vector", "scalar"), title

        # The secret is rotated on the dashboard; station a meets it at its next upload.
        secret = emulator.config.client_secret
        set_knobs(emulator, client_secret="rotated-on-the-dashboard")
        make_zip(a.daemon.settings.watch.paths[0] / "take.zip", pad=1 * MIB)
        wait_for(
            lambda: prometheus.firing("TeleportSyncAuthFailing") == {a_address},
            30,
            "TeleportSyncAuthFailing for station a alone",
        )
        # Alertmanager routes it (critical) to the on-call channel, naming the station.
        wait_for(lambda: slack_messages(slack, "TeleportSyncAuthFailing"), 20, "the Slack message")
        [message] = slack_messages(slack, "TeleportSyncAuthFailing")
        assert message["channel"] == "#capture-oncall"
        [attachment] = message["attachments"]
        assert attachment["text"].startswith(f"{a_address}: the token endpoint refuses")
        assert "Runbook: README.md#troubleshooting" in attachment["text"]
        assert b_address not in json.dumps(message)

        # The secret is put back: the station's probe succeeds and the alert ends.
        set_knobs(emulator, client_secret=secret)
        wait_for(
            lambda: not prometheus.firing("TeleportSyncAuthFailing"), 20, "the alert to resolve"
        )
        wait_for(
            lambda: slack_messages(slack, "TeleportSyncAuthFailing", "RESOLVED"),
            20,
            "Slack told it is resolved",
        )

        # Station b stops: Prometheus sees it down and says which.
        b.__exit__(None, None, None)
        wait_for(
            lambda: prometheus.firing("TeleportSyncDown") == {b_address},
            20,
            "TeleportSyncDown for station b",
        )
        series = prometheus.api("query", query='ALERTS{alertname="TeleportSyncDown"}')["result"]
        assert [s["metric"]["instance"] for s in series] == [b_address], json.dumps(series)


def slack_messages(slack: Sink, alertname: str, status: str = "FIRING") -> list[dict[str, Any]]:
    """What Alertmanager posted to the Slack webhook about `alertname` (firing or resolved)."""
    titles = [(r.json(), r.json()["attachments"][0]["title"]) for r in slack.received]
    return [m for m, title in titles if title.startswith(f"[{status}] {alertname}: ")]
