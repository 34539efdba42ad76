"""A real container engine for the test suite: Debian's podman, run by the project's own settings.

- podman runs with runc (crun refuses the hybrid cgroup layout of these machines) and without
  its default open-files limit (raising RLIMIT_NOFILE is not permitted here): both are set in a
  containers.conf of the test's own, given to every podman call through CONTAINERS_CONF, never
  in the machine's /etc.
- No image registry is reachable, so the official `python:3.11-slim-bookworm` cannot be pulled.
  The image is built instead on a stand-in base made from Debian's own packages by mmdebstrap
  (Debian bookworm's python3 is 3.11, as the official image's is), passed as the Dockerfile's
  `BASE` build argument. Users build on the official image, the argument's default.
- The stand-in is built once per machine: the podman image is tagged with a digest of its
  recipe and reused while it exists; its tarball is kept under `.cache/container-base/` to
  import it again without Debian's mirror.
- pip inside the build reaches the package index only with this machine's CA bundle, so the
  bundle is mounted read-only into the build's RUN steps.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "container-base"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

ENGINE_CONF = """\
# The test suite's podman settings (tests/container_engine.py), read through CONTAINERS_CONF.
[containers]
# podman raises RLIMIT_NOFILE in every container by default; these machines do not allow it.
default_ulimits = []

[engine]
# crun refuses the kernel's hybrid cgroup layout here; runc runs.
runtime = "runc"
"""

SUITE = "bookworm"
# What the official image brings that the Dockerfile relies on: Python 3.11 and pip, CA
# certificates, and Python's headers (the build stage compiles the MD5 lanes kernel).
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "python3-dev", "ca-certificates")
# As in the official image, pip may install outside a venv (no PEP 668 marker).
BASE_HOOK = 'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
BASE_CHANGES = ("ENV LANG=C.UTF-8", 'CMD ["python3"]')
TOOLS = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}


def missing_packages() -> list[str]:
    """The Debian packages whose commands are not found (.ci/system-packages installs them)."""
    return [package for command, package in TOOLS.items() if shutil.which(command) is None]


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Podman:
    conf: Path

    @classmethod
    def configured_in(cls, folder: Path) -> Podman:
        conf = folder / "containers.conf"
        conf.write_text(ENGINE_CONF, encoding="utf-8")
        return cls(conf)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise EngineError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def image_exists(self, tag: str) -> bool:
        return self("image", "exists", tag, check=False).returncode == 0


def base_recipe() -> list[str]:
    """The mmdebstrap command line, less its output file."""
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        f"--customize-hook={BASE_HOOK}",
        SUITE,
    ]


def stand_in_base(podman: Podman, *, fresh: bool = False) -> str:
    """The stand-in base image's tag: found in podman, imported from the cached tarball, or
    built by mmdebstrap from Debian's mirror (about a minute and a half; always when `fresh`)."""
    key = hashlib.sha256("\0".join([*base_recipe(), *BASE_CHANGES]).encode()).hexdigest()[:12]
    tag = f"localhost/teleport-sync-base:{SUITE}-{key}"
    if podman.image_exists(tag) and not fresh:
        return tag
    tarball = CACHE / f"{SUITE}-{key}.tar"
    if fresh or not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(f".{os.getpid()}.partial.tar")  # runs may overlap
        made = subprocess.run(
            [*base_recipe(), str(partial)], capture_output=True, text=True, timeout=900
        )
        if made.returncode != 0:
            partial.unlink(missing_ok=True)
            raise EngineError(f"mmdebstrap failed:\n{made.stderr[-3000:]}")
        partial.rename(tarball)  # only a whole tarball is ever reused
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    podman("import", *changes, str(tarball), tag, timeout=300)
    return tag


def build_image(
    podman: Podman, base: str, tag: str, extras: str = "preflight", *, cached: bool = True
) -> float:
    """Build the project's Dockerfile on `base` as `tag`; the seconds it took.

    `--format docker` keeps HEALTHCHECK (the OCI format has no such field); the build's RUN
    steps use the host's network (pip and apt reach their registries, nothing else listens).
    The image `tag` named before is removed when the build replaces it (its layers shared
    with the new one, such as the build stage's compiler, stay cached).
    """
    args = ["build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={base}"]
    args += ["--build-arg", f"EXTRAS={extras}", "--tag", tag]
    args += [] if cached else ["--no-cache"]
    if HOST_CA_BUNDLE.exists():
        args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    before = image_id(podman, tag)
    started = time.monotonic()
    podman(*args, str(ROOT), timeout=1200)
    seconds = time.monotonic() - started
    if before is not None and before != image_id(podman, tag):
        podman("image", "rm", before, check=False)  # fails harmlessly while a container uses it
    return seconds


def image_id(podman: Podman, tag: str) -> str | None:
    if not podman.image_exists(tag):
        return None
    return podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def image_size(podman: Podman, tag: str) -> int:
    """Bytes, as `podman images` counts them (uncompressed, all layers)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
