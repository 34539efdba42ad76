"""Pre-flight's cost: seconds per 100 photos of 12 MP and per minute of 1080p video, peak RSS,
against what uploading the same bytes takes at 100 Mbit/s; and the video decoders compared.
With `--hostile`: peak RSS and time on hostile archives instead, against the typical set.

    python bench/preflight.py [--images 300] [--seconds 60] [--work DIR] [--hostile]

Inputs are made here by ffmpeg and zip: 300 JPEGs of 4000x3000 (a textured scene walked
past, with sensor-like noise, about 3 MB each, stored in one zip) and a 60 s 1920x1080 H.264
MP4 (keyframe every second, as phones write; plus one with ffmpeg's default of one keyframe
per 250 frames). Each is judged by `teleport-sync check --json` in its own process: wall time
and that process's peak RSS. The decoders are compared on the phone-like video: PyAV (our
keyframe-aware sampler) and, when installed, OpenCV's headless wheel (seek-and-read, and
reading every frame), each with its installed size.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile_archives import flat_png, zip_bomb

from common import TELEPORT_SYNC, save

UPLOAD_BYTES_PER_SECOND = 100e6 / 8  # 100 Mbit/s


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def make_photos(work: Path, count: int) -> Path:
    """`count` 12 MP JPEGs walking along a textured scene, zipped (stored) by the zip CLI."""
    archive = work / f"photos-{count}.zip"
    if archive.exists():
        return archive
    folder = work / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    scene = work / "scene.png"
    ffmpeg(
        "-f", "lavfi", "-i", "life=s=7000x3000:mold=10:ratio=0.5:seed=3:death_color=#383028:"
        "life_color=#c8d0b0,format=yuv420p",
        "-f", "lavfi", "-i", "testsrc2=s=7000x3000,format=yuv420p",
        "-filter_complex", "[0:v][1:v]blend=all_mode=average,gblur=sigma=1.5",
        "-frames:v", "1", str(scene),
    )  # fmt: skip
    ffmpeg(
        "-loop", "1", "-i", str(scene),
        "-vf", "crop=4000:3000:x='mod(n*80,3000)':y=0,noise=alls=6:allf=t",
        "-frames:v", str(count), "-q:v", "2", str(folder / "IMG_%04d.jpg"),
    )  # fmt: skip
    subprocess.run(["zip", "-q", "-0", "-r", str(archive), "photos"], cwd=work, check=True)
    shutil.rmtree(folder)
    return archive


def make_video(work: Path, seconds: int, keyint: int) -> Path:
    """A 1080p30 H.264 walk, `keyint` frames between keyframes, ~12 Mbit/s as a phone's."""
    path = work / f"walk-{seconds}s-g{keyint}.mp4"
    if not path.exists():
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30,noise=alls=4:allf=t",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "12M",
            "-g", str(keyint), "-pix_fmt", "yuv420p", str(path),
        )  # fmt: skip
    return path


def judged(path: Path) -> dict[str, Any]:
    """`check --json` of one file in its own process: wall time, peak RSS, its figures."""
    config = path.parent / "empty-config.toml"  # the defaults, whatever the user's config says
    config.touch(mode=0o600)
    started = time.perf_counter()
    process = subprocess.Popen(
        [*TELEPORT_SYNC, "--config", str(config), "check", "--json", str(path)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, _status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    [result] = json.loads(out)
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "wall_seconds": round(elapsed, 2),
        "check_seconds": result.get("seconds"),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "upload_seconds_at_100_mbit": round(path.stat().st_size / UPLOAD_BYTES_PER_SECOND, 2),
        "verdict": result["verdict"],
        "figures": result.get("figures"),
    }


def installed_mib(*dists: str) -> float:
    total = 0
    for name in dists:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return round(total / 2**20, 1)


def decoders(video: Path, samples: int = 60) -> dict[str, Any]:
    """Seconds to get `samples` evenly spread frames of `video`, per decoder."""
    from teleport_sync.preflight.video import VideoSampler

    out: dict[str, Any] = {}
    started = time.perf_counter()
    sampler = VideoSampler(video, samples)
    got = sum(1 for _ in sampler.samples())
    sampler.close()
    out["pyav"] = {
        "seconds": round(time.perf_counter() - started, 2),
        "frames": got,
        "installed_mib": installed_mib("av"),
        "how": "demux index, then keyframes (or decode forward to targets); measures included",
    }
    try:
        import cv2
    except ImportError:
        out["opencv"] = "not installed (pip install opencv-python-headless to compare)"
        return out
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    started = time.perf_counter()
    got = 0
    for i in range(samples):
        capture.set(cv2.CAP_PROP_POS_FRAMES, (i + 0.5) * total // samples)
        got += bool(capture.read()[0])
    seek = time.perf_counter() - started
    capture.release()
    capture = cv2.VideoCapture(str(video))
    started = time.perf_counter()
    while capture.grab():
        pass
    every = time.perf_counter() - started
    capture.release()
    out["opencv"] = {
        "seek_and_read_seconds": round(seek, 2),
        "read_every_frame_seconds": round(every, 2),
        "frames": got,
        "installed_mib": installed_mib("opencv-python-headless"),
        "how": "CAP_PROP_POS_FRAMES seek + read (decoding only, no measures)",
    }
    return out


def make_hostile(work: Path) -> list[Path]:
    """The archives of issue 37: six 20000x4400 PNGs with six 9400x9400 JPEGs (1.6 GiB of
    RSS before the budget), 40 members of 255 MiB of zeros (a zip bomb), 100,000 tiny photos;
    and a 3 s 8192x4320 H.264 video (the largest frames pre-flight decodes)."""
    pictures = work / "hostile.zip"
    if not pictures.exists():
        jpeg = work / "huge.jpg"
        source = "testsrc2=s=9400x9400"
        ffmpeg("-f", "lavfi", "-i", source, "-frames:v", "1", "-q:v", "9", str(jpeg))
        panorama = flat_png(20000, 4400)
        with zipfile.ZipFile(pictures, "w", zipfile.ZIP_STORED) as out:
            for i in range(6):
                out.writestr(f"pano_{i:02d}.png", panorama)
                out.write(jpeg, f"huge_{i:02d}.jpg")
    bomb = work / "bomb.zip"
    if not bomb.exists():
        zip_bomb(bomb, 40, 255 << 20)
    many = work / "many.zip"
    if not many.exists():
        tiny = work / "tiny.jpg"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1", str(tiny))
        with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as out:
            for i in range(100_000):
                out.write(tiny, f"IMG_{i:06d}.jpg")
    video = work / "8k.mp4"  # the largest frames decoded: one at a time, slices in parallel
    if not video.exists():
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=8192x4320:r=10", "-t", "3", "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(video),
        )  # fmt: skip
    return [pictures, bomb, many, video]


def hostile(work: Path, images: int) -> dict[str, Any]:
    """Each hostile archive judged in its own process, beside the typical 12 MP set."""
    typical = judged(make_photos(work, images))
    rows = [judged(path) for path in make_hostile(work)]
    summary = {
        "typical_peak_rss_mib": typical["peak_rss_mib"],
        "hostile_peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "hostile_worst_wall_seconds": max(r["wall_seconds"] for r in rows),
        "within_512_mib": all(r["peak_rss_mib"] <= 512 for r in rows),
    }
    return {"summary": summary, "typical": typical, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--work", type=Path, help="keep inputs here between runs")
    parser.add_argument("--hostile", action="store_true", help="peak RSS on hostile archives")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tsync-preflight-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.hostile:
        result = hostile(work, args.images)
        print(json.dumps(result, indent=2))
        print(f"saved {save('preflight-hostile', result)}")
        if not args.work:
            shutil.rmtree(work)
        return
    photos = make_photos(work, args.images)
    phone = make_video(work, args.seconds, 30)
    sparse = make_video(work, args.seconds, 250)
    rows = [judged(photos), judged(phone), judged(sparse)]
    per_100 = rows[0]["wall_seconds"] * 100 / args.images
    per_minute = rows[1]["wall_seconds"] * 60 / args.seconds
    summary = {
        "seconds_per_100_images_12mp": round(per_100, 2),
        "seconds_per_minute_1080p_video": round(per_minute, 2),
        "seconds_per_minute_1080p_sparse_keyframes": round(
            rows[2]["wall_seconds"] * 60 / args.seconds, 2
        ),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
    }
    result = {"summary": summary, "runs": rows, "decoders": decoders(phone)}
    print(json.dumps(result, indent=2))
    print(f"saved {save('preflight', result)}")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
