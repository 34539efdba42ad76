"""The pose check's cost: 100 photos of 12 MP, and 2 minutes of 1080p video, on this machine.

    python bench/pose.py [--photos 100] [--seconds 120] [--work DIR] [--keep]

Inputs are rendered here from the tests' 3D room (tests/rooms.py: a textured box room with
objects, so the views have depth): an orbit of `--photos` views, rendered at 640x480 and
scaled up to 4000x3000 with sensor-like noise (JPEG, stored in a zip), and a walk around the
room of `--seconds` seconds, two rendered views a second, encoded by ffmpeg as 1920x1080
H.264 at 30 frames/s (each view held for 15 frames: the decoder still decodes every frame).
Each input is checked by the pose check alone (`preflight.pose.run_pose`, its real child
process, default settings but `pose = "warn"`): wall time, the child's peak RSS, the figures;
against the time the same bytes take to upload at 100 Mbit/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from common import save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
UPLOAD_BYTES_PER_SECOND = 100e6 / 8  # 100 Mbit/s


def make_photos(work: Path, count: int) -> Path:
    import numpy as np
    from PIL import Image
    from tests import rooms

    archive = work / f"orbit-{count}.zip"
    if archive.exists():
        return archive
    room = rooms.furnished_room()
    rng = np.random.default_rng(5)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for number, (position, target) in enumerate(rooms.orbit(count), start=1):
            small = rooms.render(room, position, target, (640, 480))
            big = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.BICUBIC), np.int16)
            big += rng.integers(-6, 7, big.shape, dtype=np.int16)  # sensor-like grain
            photo = work / "photo.jpg"
            Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(photo, quality=92)
            out.write(photo, f"IMG_{number:04d}.jpg")
    return archive


def make_video(work: Path, seconds: int) -> Path:
    from PIL import Image
    from tests import rooms

    video = work / f"walk-{seconds}s.mp4"
    if video.exists():
        return video
    frames = work / "frames"
    frames.mkdir(exist_ok=True)
    room = rooms.furnished_room()
    for number, (position, target) in enumerate(rooms.orbit(seconds * 2, turn=720.0)):
        Image.fromarray(rooms.render(room, position, target, (480, 270))).save(
            frames / f"{number:05d}.png"
        )
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-framerate", "2", "-i", str(frames / "%05d.png"),
         "-vf", "scale=1920:1080:flags=bicubic,fps=30",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
         str(video)],
        check=True,
    )  # fmt: skip
    shutil.rmtree(frames)
    return video


def checked(path: Path, kind: str) -> dict[str, Any]:
    """The pose check of `path` in a fresh process (so its peak RSS is its own)."""
    program = (
        "import json, resource, sys, time\n"
        "from pathlib import Path\n"
        "from teleport_sync.config import PreflightSettings\n"
        "from teleport_sync.preflight.pose import run_pose\n"
        "started = time.monotonic()\n"
        "run = run_pose(Path(sys.argv[1]), sys.argv[2], PreflightSettings(pose='warn'))\n"
        "wall = time.monotonic() - started\n"
        "child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'status': run.status, 'detail': run.detail, 'wall': wall,\n"
        "                  'child_peak_mib': child, 'figures': run.figures}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(path), kind], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    figures = found.pop("figures")
    for bulky in ("cloud", "path", "names", "features", "view_group_members", "left_out"):
        figures.pop(bulky, None)
    upload = path.stat().st_size / UPLOAD_BYTES_PER_SECOND
    return {
        "file": path.name,
        "mib": round(path.stat().st_size / 2**20, 1),
        "seconds": round(found["wall"], 1),
        "upload_seconds_100mbit": round(upload, 1),
        "ratio_to_upload": round(found["wall"] / upload, 2),
        "peak_rss_mib": round(found["child_peak_mib"]),
        "status": found["status"],
        "detail": found["detail"],
        "figures": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pose-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        photos = make_photos(work, args.photos)
        video = make_video(work, args.seconds)
        print(f"inputs made in {time.monotonic() - started:.0f} s", flush=True)
        results = [checked(photos, "images"), checked(video, "video")]
        for r in results:
            print(
                f"{r['file']}: {r['seconds']} s (upload at 100 Mbit/s: "
                f"{r['upload_seconds_100mbit']} s), peak RSS {r['peak_rss_mib']} MiB, "
                f"{r['status']}; posed {r['figures'].get('posed')} of "
                f"{r['figures'].get('frames')}, {r['figures'].get('seconds')}",
                flush=True,
            )
        print(f"saved {save('pose', {'results': results, 'self_rss_mib': _self_rss()})}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _self_rss() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
