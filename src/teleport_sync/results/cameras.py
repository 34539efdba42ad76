"""What Teleport did with the frames: its camera list (metadata v2's `cameras_url`) read
against the input, so `status`, the console and `ready` can say which photos it left out.

The list is `{"cameras": [{"image_name": ..., "position": [x, y, z], ...}]}` or a bare list; a
tolerant reader also takes `filename`/`name` and `camera_center` (NOTES "Metadata v2"). Other
fields are kept in `cameras.json` as they came and never fail the reading.

A zip's photos are matched by name: the path in the zip, else the file name, else the stem
(the service may re-encode `.png` as `.jpg`), in any letter case. A video's frames have only
the names the service gave them (`frame_00105.jpg`): when those carry a running number, the
numbers missing from the sequence are the frames left out; when they do not, the result is a
count of posed frames and nothing is named.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Any

from ..inputs.frames import zip_image_names
from ..logging import get_logger
from ..models import InputDataFormat, TeleportPosed

log = get_logger("teleport_sync.results")

CAMERAS_FILE = "cameras.json"
# A camera is ~200 bytes of JSON: 64 MiB is far past any capture (3,000 photos is ~1 MiB), and
# bounds what reading one costs in memory.
MAX_CAMERAS_BYTES = 64 * 1024 * 1024
_NAME_KEYS = ("image_name", "filename", "file_name", "name", "image")
_POSITION_KEYS = ("position", "camera_center", "center", "translation")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass(frozen=True)
class Camera:
    name: str | None
    position: tuple[float, float, float] | None


def read_cameras(data: Any) -> list[Camera]:
    """The cameras of a camera list of any known shape; entries it cannot read are skipped."""
    if isinstance(data, dict):
        data = next((data[k] for k in ("cameras", "frames", "images") if k in data), [])
    if not isinstance(data, list):
        return []
    cameras = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        name = next((entry[k] for k in _NAME_KEYS if isinstance(entry.get(k), str)), None)
        cameras.append(Camera(name, _position(entry)))
    return cameras


def _position(entry: dict[str, Any]) -> tuple[float, float, float] | None:
    for key in _POSITION_KEYS:
        value = entry.get(key)
        if isinstance(value, list | tuple) and len(value) == 3:
            try:
                x, y, z = (float(v) for v in value)
            except (TypeError, ValueError):
                continue
            return x, y, z
    return None


def load_cameras(path: Path) -> list[Camera]:
    """The cameras in a saved `cameras.json`; an unreadable (or absurdly large) file is none."""
    try:
        if path.stat().st_size > MAX_CAMERAS_BYTES:
            log.warning("the camera list is too large to read", cameras=str(path))
            return []
        return read_cameras(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def _keys(name: str) -> tuple[str, str, str]:
    pure = PurePosixPath(name.replace("\\", "/"))
    return name.lower(), pure.name.lower(), pure.stem.lower()


def match_photos(cameras: list[Camera], photos: list[str]) -> TeleportPosed:
    """Which of a zip's `photos` the cameras name; count only when the names do not match."""
    names = [c.name for c in cameras if c.name]
    wanted = [set(_keys(n)) for n in names]
    posed_keys = set().union(*wanted) if wanted else set()
    hits = [p for p in photos if posed_keys & set(_keys(p))]
    if names and len(hits) < len(names) / 2:
        # Most names match nothing here: not this input's names (renamed by the service).
        return TeleportPosed(len(cameras), None, [], matched=False)
    left_out = [p for p in photos if not posed_keys & set(_keys(p))]
    return TeleportPosed(len(photos) - len(left_out), len(photos), left_out)


def match_video(cameras: list[Camera]) -> TeleportPosed:
    """A video's posed frames, with the gaps in the service's frame numbering named."""
    kind = "video frames"
    parts = [_NUMBERED.match(c.name or "") for c in cameras]
    if not cameras or not all(parts):
        return TeleportPosed(len(cameras), None, [], matched=False, kind=kind)
    shapes = {(m[1], m[3], len(m[2])) for m in parts if m}
    if len(shapes) != 1:
        return TeleportPosed(len(cameras), None, [], matched=False, kind=kind)
    prefix, suffix, width = shapes.pop()
    numbers = sorted(int(m[2]) for m in parts if m)
    steps = Counter(b - a for a, b in pairwise(numbers) if b > a)
    step = steps.most_common(1)[0][0] if steps else 1
    have = set(numbers)
    expected = range(numbers[0], numbers[-1] + 1, step)
    missing = [f"{prefix}{n:0{width}d}{suffix}" for n in expected if n not in have]
    return TeleportPosed(len(cameras), len(cameras) + len(missing), missing, kind=kind)


def summarize(cameras: list[Camera], photos: list[str] | None) -> TeleportPosed:
    """`photos`: the zip's image names; None for a video."""
    if photos is None:
        return match_video(cameras)
    return match_photos(cameras, photos)


def posed_of(cameras_file: Path, input_path: Path, input_format: str) -> TeleportPosed | None:
    """What Teleport did with an input, from its saved camera list (None without one): a
    zip's photos matched by name, a video's frames by the service's numbering."""
    if not cameras_file.is_file():
        return None
    cameras = load_cameras(cameras_file)
    if not cameras:  # unreadable, or a shape not known: say nothing rather than "0 posed"
        log.warning("the camera list names no camera; not read", cameras=str(cameras_file))
        return None
    photos = None
    if input_format == InputDataFormat.BULK_IMAGES:
        try:
            photos = zip_image_names(input_path) or []
        except OSError as exc:  # the input cannot be read: the count alone, said why
            log.warning("cannot read the input's names", path=str(input_path), error=str(exc))
            photos = []
    posed = summarize(cameras, photos)
    log.info(posed.sentence(), path=str(input_path))
    return posed
