"""What Teleport did with the frames, for the capture page: the sentence, the photos it left out
as thumbnails (read from the input zip, only the members its camera list left out), and the
camera path for the 3D view (from `cameras.json`, in the `coord_system` it was asked in).
"""

from __future__ import annotations

import io
import mimetypes
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..journal import FileRecord
from ..models import InputDataFormat, TeleportPosed
from ..results.cameras import CAMERAS_FILE, load_cameras

THUMBNAIL_PX = 240
# A member larger than this is not read for a thumbnail (a zip bomb, or a 100 MP TIFF).
MAX_MEMBER_BYTES = 64 * 1024 * 1024


def posed_view(record: FileRecord) -> dict[str, Any] | None:
    """The capture page's "What Teleport did" section, or None without a camera list."""
    if not record.teleport_posed:
        return None
    posed = TeleportPosed.from_json(record.teleport_posed)
    zipped = record.input_data_format == InputDataFormat.BULK_IMAGES
    return {
        "sentence": posed.sentence(),
        "left_out": [
            {"n": n, "name": PurePosixPath(name).name} for n, name in enumerate(posed.left_out)
        ],
        "thumbnails": zipped and Path(record.path).is_file(),
        "cameras": cameras_file(record) is not None,
    }


def cameras_file(record: FileRecord) -> Path | None:
    return next(
        (
            Path(p)
            for p in record.result_paths
            if Path(p).name == CAMERAS_FILE and Path(p).is_file()
        ),
        None,
    )


def left_out_picture(record: FileRecord, n: int) -> tuple[bytes, str] | None:
    """The `n`-th left-out photo, read from the input zip: a JPEG thumbnail (Pillow), or the
    photo as it is when Pillow is not installed; None when it cannot be read."""
    if not record.teleport_posed or record.input_data_format != InputDataFormat.BULK_IMAGES:
        return None
    names = TeleportPosed.from_json(record.teleport_posed).left_out
    if not 0 <= n < len(names):
        return None
    try:
        with zipfile.ZipFile(record.path) as archive:
            info = archive.getinfo(names[n])
            if info.file_size > MAX_MEMBER_BYTES:
                return None
            data = archive.read(info)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return None
    return _thumbnail(data) or (data, mimetypes.guess_type(names[n])[0] or "image/jpeg")


def _thumbnail(data: bytes) -> tuple[bytes, str] | None:
    try:
        from PIL import Image
    except ImportError:  # the preflight extra brings Pillow; without it the photo goes as is
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return out.getvalue(), "image/jpeg"


def camera_path(record: FileRecord) -> list[list[float]] | None:
    """The posed cameras' positions in their order, for the 3D view's camera path."""
    found = cameras_file(record)
    if found is None:
        return None
    return [list(c.position) for c in load_cameras(found) if c.position is not None]
