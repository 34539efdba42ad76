"""Fetch the 3D viewer's files for the console: `python -m teleport_sync.web.viewer_assets`.

The console's 3D view uses @mkkellogg/gaussian-splats-3d on three.js (both MIT). Their files are
served by teleport-sync itself, never from a CDN, so the console works on an offline machine;
they are fetched once, at install time, from the npm registry by exact version, and each tarball
is checked against the SHA-512 integrity hash pinned below (the same hash `npm view
PACKAGE@VERSION dist.integrity` prints) before anything is unpacked. Only the built module and
the licence are kept. Without them the console shows a still thumbnail instead of the 3D view.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Pinned:
    package: str
    version: str
    integrity: str  # "sha512-<base64>", as in package-lock.json
    files: dict[str, str]  # member in the tarball -> file name in the vendor folder

    def tarball_url(self, registry: str) -> str:
        base = self.package.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.package}/-/{base}-{self.version}.tgz"


PINNED = (
    Pinned(
        "three",
        "0.160.1",
        "sha512-Bgl2wPJypDOZ1stAxwfWAcJ0WQf7QzlptsxkjYiURPz+n5k4RBDLsq+6f9Y75TYxn6aHLcWz+JNmwTOXWrQTBQ==",
        {
            "package/build/three.module.min.js": "three.module.min.js",
            "package/LICENSE": "LICENSE-three.txt",
        },
    ),
    Pinned(
        "@mkkellogg/gaussian-splats-3d",
        "0.4.7",
        "sha512-0vy9/i9sJLFH/v3WJZ4axCsqjkToe8UsV3xY7bvK5EUC0akiRsWZODoCiSzpxhTLNyzSKTsyQKozIFeNA5RWRA==",
        {
            "package/build/gaussian-splats-3d.module.js": "gaussian-splats-3d.module.js",
            "package/LICENSE": "LICENSE-gaussian-splats-3d.txt",
        },
    ),
)
# The viewer imports the bare name 'three'; served as plain files it must name the file instead
# (an import map would need an inline script, which the console's CSP forbids).
THREE_IMPORT = (b"from 'three'", b"from './three.module.min.js'")


class IntegrityError(Exception):
    """A downloaded tarball does not match its pinned hash."""


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise IntegrityError(f"hash mismatch: expected {integrity}, got {algorithm}-{digest}")


def unpack(pin: Pinned, tarball: bytes, dest: Path) -> list[Path]:
    """Check `tarball` against the pin, then write the pinned members into `dest`."""
    check_integrity(tarball, pin.integrity)
    written = []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member, name in pin.files.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise IntegrityError(f"{pin.package}@{pin.version} has no {member}")
            body = extracted.read()
            if name == "gaussian-splats-3d.module.js":
                body = body.replace(*THREE_IMPORT)
            target = dest / name
            target.write_bytes(body)
            written.append(target)
    (dest / f"{pin.package.rsplit('/', 1)[-1]}.version").write_text(f"{pin.version}\n")
    return written


def fetch(dest: Path, registry: str = REGISTRY) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for pin in PINNED:
        url = pin.tarball_url(registry)
        with urllib.request.urlopen(url, timeout=120) as response:
            tarball = response.read()
        written += unpack(pin, tarball, dest)
    return written


def main(argv: list[str] | None = None) -> int:
    # Runnable as a plain script too (`python src/teleport_sync/web/viewer_assets.py`), before
    # the package is installed: so nothing of the package is imported here.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).parent / "static" / "vendor"
    parser.add_argument("--dest", type=Path, default=default, help="vendor folder")
    parser.add_argument("--registry", default=REGISTRY, help="npm registry URL")
    args = parser.parse_args(argv)
    try:
        for path in fetch(args.dest, args.registry):
            print(f"wrote {path}")
    except (OSError, IntegrityError) as exc:
        print(f"error: cannot fetch the 3D viewer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
