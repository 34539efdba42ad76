"""Real pictures for the demo's samples: photos and a video walking along a made-up scene.

The scene is a few soft colour waves (structure a perceptual hash can tell apart) with fine
seeded noise (detail a sharpness measure can see). Photos and frames are crops moving along
it, as a camera walking past. Needs numpy and Pillow (photos) and PyAV (video): the preflight
extra; `samples` falls back to structural stand-ins without them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

SCENE = (4200, 900)
VIEW = (1280, 720)


def scene(seed: int = 7) -> Any:
    """The scene as an RGB uint8 array (height, width, 3)."""
    import numpy as np

    width, height = SCENE
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    channels = []
    for phase in (0.0, 2.1, 4.2):
        wave = np.sin(x * 23 + phase) * np.cos(y * 5 + x * 7 + phase) + np.sin(x * 61 - y * 3)
        channels.append(wave)
    picture = np.stack(channels, axis=-1) * 45 + 128
    picture += rng.normal(0, 18, size=(height, width, 1)).astype(np.float32)
    return np.clip(picture, 0, 255).astype(np.uint8)


def view(picture: Any, x: int) -> Any:
    width, height = VIEW
    top = (picture.shape[0] - height) // 2
    return picture[top : top + height, x : x + width]


def write_photo_zip(path: Path, photos: int = 24, still_from: int = 16, step: int = 80) -> Path:
    """A zip of JPEG photos along the scene; from photo `still_from` on the camera stood still
    (the same view again: the near-duplicates pre-flight warns about)."""
    from PIL import Image

    picture = scene()
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for i in range(photos):
            out = io.BytesIO()
            Image.fromarray(view(picture, step * min(i, still_from))).save(out, "JPEG", quality=85)
            archive.writestr(f"photos/IMG_{i + 1:04d}.jpg", out.getvalue())
    partial.replace(path)
    return path


def write_walk_mp4(path: Path, seconds: int = 6, fps: int = 30) -> Path:
    """An H.264 MP4 walking steadily along the scene (keyframe every second, as phones do)."""
    import av

    picture = scene()
    speed = (SCENE[0] - VIEW[0]) / (seconds * fps)
    partial = path.with_name(path.name + ".part")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = VIEW
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18", "g": str(fps)}
        for n in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(view(picture, round(n * speed)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    partial.replace(path)
    return path
