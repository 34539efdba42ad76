"""Real pictures for the pre-flight tests, made by ffmpeg and the `zip` CLI.

A "scene" is one wide still (a random cell texture over ffmpeg's test pattern, softly
blurred, so every crop of it is equally detailed); photos and videos are crops of it that
move along it, as a camera walking past. Blurred, dark, duplicated and short variants are made
with ffmpeg's own filters.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

SCENE_SIZE = (3200, 1200)
PHOTO_SIZE = (960, 720)
STEP = 60  # pixels the view moves between photos (7.5 % of a photo's width)


def have_tools() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("zip") is not None


needs_tools = pytest.mark.skipif(
    not have_tools(),
    reason="ffmpeg and zip are needed (Debian: apt-get install ffmpeg zip)",
)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def make_scene(path: Path) -> Path:
    width, height = SCENE_SIZE
    ffmpeg(
        "-f", "lavfi",
        "-i", f"life=s={width}x{height}:mold=10:ratio=0.5:seed=7:death_color=#303030:"
        "life_color=#d0d0d0,format=yuv420p",
        "-f", "lavfi", "-i", f"testsrc2=s={width}x{height},format=yuv420p",
        "-filter_complex", "[0:v][1:v]blend=all_mode=average,gblur=sigma=1.2",
        "-frames:v", "1", str(path),
    )  # fmt: skip
    return path


def make_photos(
    scene: Path, folder: Path, count: int, *, suffix: str = "jpg", vf: Sequence[str] = ()
) -> list[Path]:
    """`count` photos along the scene: IMG_0001.jpg, ... each STEP pixels on (`vf`: more
    ffmpeg filters for every photo, e.g. gblur for a set blurred throughout)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = PHOTO_SIZE
    ffmpeg(
        "-loop", "1", "-i", str(scene),
        "-vf", ",".join([f"crop={width}:{height}:x='n*{STEP}':y=300", *vf]),
        "-frames:v", str(count), "-q:v", "3", str(folder / f"IMG_%04d.{suffix}"),
    )  # fmt: skip
    return sorted(folder.glob(f"IMG_*.{suffix}"))


def filtered(photo: Path, vf: str) -> None:
    """Rewrite `photo` through an ffmpeg filter (gblur for blur, lutyuv for exposure)."""
    out = photo.with_name("filtered-" + photo.name)
    ffmpeg("-i", str(photo), "-vf", vf, "-q:v", "3", str(out))
    out.replace(photo)


def zip_folder(folder: Path, archive: Path) -> Path:
    """The `zip` CLI's archive of `folder` (stored by its name inside)."""
    subprocess.run(
        ["zip", "-q", "-r", str(archive.absolute()), folder.name], cwd=folder.parent, check=True
    )
    return archive


def make_video(
    scene: Path,
    path: Path,
    *,
    seconds: float,
    fps: int = 30,
    keyint: int = 30,
    vf: Sequence[str] = (),
    still_from: float | None = None,
) -> Path:
    """An H.264 MP4 walking along the scene at 2 photo-steps a second (`still_from`: the
    camera stops there, as on a tripod left standing)."""
    width, height = 1280, 720
    speed = f"{2 * STEP}*min(t,{still_from})" if still_from is not None else f"{2 * STEP}*t"
    chain = [f"crop={width}:{height}:x='{speed}':y=200", *vf]
    ffmpeg(
        "-loop", "1", "-framerate", str(fps), "-i", str(scene), "-t", str(seconds),
        "-vf", ",".join(chain), "-c:v", "libx264", "-preset", "veryfast",
        "-g", str(keyint), "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path
