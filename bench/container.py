"""The container image: how long it takes to build from nothing and how big it is, with and
without the preflight extra, on podman (the test suite's engine, tests/container_engine.py).

    python bench/container.py [--fresh-base]

Each image is built with `--no-cache` (every layer made again: apt's gcc in the build stage,
the wheel with its compiled kernel, the dependencies from the package index), so the times are
a cold build's on this machine and network. No registry is reachable here, so the images stand
on the test suite's base made from Debian's packages (mmdebstrap, timed with --fresh-base);
the layers above it, the project's, are what the official base would carry too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.container_engine import (
    Podman,
    build_image,
    image_size,
    missing_packages,
    stand_in_base,
)

from common import save

MB = 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-base", action="store_true", help="mmdebstrap the base again")
    options = parser.parse_args()
    if missing := missing_packages():
        sys.exit(f"not installed: {', '.join(missing)} (apt-get install {' '.join(missing)})")
    with tempfile.TemporaryDirectory() as folder:
        podman = Podman.configured_in(Path(folder))
        started = time.monotonic()
        base = stand_in_base(podman, fresh=options.fresh_base)
        base_seconds = time.monotonic() - started
        base_bytes = image_size(podman, base)
        results: dict[str, object] = {"base": base, "base_mb": round(base_bytes / MB)}
        if options.fresh_base:
            results["base_seconds"] = round(base_seconds, 1)
        for extras in ("preflight", ""):
            tag = f"localhost/teleport-sync:bench-{extras or 'plain'}"
            seconds = build_image(podman, base, tag, extras, cached=False)
            size = image_size(podman, tag)
            results[extras or "plain"] = {
                "build_seconds": round(seconds, 1),
                "image_mb": round(size / MB),
                "above_base_mb": round((size - base_bytes) / MB),
            }
            podman("image", "rm", tag, check=False)
    print(save("container", results).read_text())


if __name__ == "__main__":
    main()
