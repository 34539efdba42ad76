"""Where pre-flight's absolute sharpness floor (`[preflight] min_sharpness`) comes from: the
sharpness of sharp pictures and of the same pictures blurred throughout, as pre-flight measures
it (decoded at its analysis size, variance of the Laplacian).

    python bench/sharpness.py [--photos DIR]

Pictures: the demo's photos and video frame (`inputs.pictures`), the tests' scene photos
(made by ffmpeg as `tests/media.py` makes them), and every .jpg/.png in `--photos DIR` (real
photos: scikit-image's wheel ships a dozen in `skimage/data`). Each is measured sharp and
blurred with a Gaussian of sigma 1, 2, 4 and 8 pixels at the analysis size (JPEG quality 90
after blurring, as a camera would store it). The default floor should sit well above every
sigma-8 figure and well below every sharp photo's; the figures are in
`preflight.measures.SHARPNESS_FLOOR`'s comment.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from teleport_sync.inputs.pictures import scene, view
from teleport_sync.preflight.images import decode_grey
from teleport_sync.preflight.measures import SHARPNESS_FLOOR, analysis_size, sharpness

SIGMAS = (1, 2, 4, 8)


def measured(picture: Image.Image) -> float:
    """Sharpness of `picture` stored as a JPEG and decoded as pre-flight decodes a zip's."""
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=90)
    grey, _ = decode_grey(out.getvalue())
    return sharpness(np.asarray(grey))


def row(name: str, picture: Image.Image) -> list[Any]:
    # Blurred at the size pre-flight measures, so sigma means the same for every picture.
    at_size = picture.convert("RGB").resize(analysis_size(*picture.size), Image.Resampling.BOX)
    blurred = [measured(at_size.filter(ImageFilter.GaussianBlur(s))) for s in SIGMAS]
    return [name, f"{picture.size[0]}x{picture.size[1]}", measured(picture), *blurred]


def tests_scene_photo(work: Path) -> Image.Image:
    """One photo of the tests' scene (`tests/media.py`: cell texture over testsrc2)."""
    out = work / "scene.png"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "life=s=3200x1200:mold=10:ratio=0.5:seed=7:death_color=#303030:"
         "life_color=#d0d0d0,format=yuv420p",
         "-f", "lavfi", "-i", "testsrc2=s=3200x1200,format=yuv420p",
         "-filter_complex", "[0:v][1:v]blend=all_mode=average,gblur=sigma=1.2",
         "-frames:v", "1", str(out)],
        check=True,
    )  # fmt: skip
    return Image.open(out).crop((0, 300, 960, 1020))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, help="a folder of real photos (.jpg, .png)")
    args = parser.parse_args()
    rows = [["demo photo", *row("", Image.fromarray(view(scene(), 0)))[1:]]]
    with tempfile.TemporaryDirectory() as work:
        rows.append(["tests' scene photo", *row("", tests_scene_photo(Path(work)))[1:]])
    if args.photos:
        for path in sorted(args.photos.iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                with Image.open(path) as picture:
                    rows.append(row(path.name, picture))
    header = ["picture", "size", "sharp", *(f"sigma {s}" for s in SIGMAS)]
    print(" ".join(f"{h:>12}" for h in header))
    for name, size, *figures in rows:
        print(f"{name[:24]:>24} {size:>12} " + " ".join(f"{v:12.1f}" for v in figures))
    sharp = [r[2] for r in rows]
    smeared = [r[-1] for r in rows]
    print(
        f"\nfloor {SHARPNESS_FLOOR:g}: sharp median {statistics.median(sharp):.0f}, lowest "
        f"{min(sharp):.1f} ({min(sharp) / SHARPNESS_FLOOR:.1f}x the floor); sigma 8 highest "
        f"{max(smeared):.1f} ({SHARPNESS_FLOOR / max(smeared):.1f}x under it)"
    )


if __name__ == "__main__":
    main()
