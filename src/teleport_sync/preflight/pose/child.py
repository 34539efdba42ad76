"""The pose check's child process: `python -m teleport_sync.preflight.pose.child REQUEST RESULT`.

Reads the request (JSON: the input, its kind and the limits), writes the frames downscaled into
the request's working folder, reconstructs them (`sfm`) and writes the figures to RESULT as JSON
(through a temporary name, so a half-written result is never read). Anything that goes wrong in
Python is written as `{"error": ...}`; an abort in native code kills only this process, and the
parent (`runner`) says so. The parent set the memory limit and kills it at the time limit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def main(request_path: str, result_path: str) -> int:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    started = time.monotonic()
    try:
        figures = _run(request, started)
    except Exception as exc:  # said in the result: the parent turns it into a reason
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    figures["seconds_total"] = round(time.monotonic() - started, 2)
    temporary = Path(result_path + ".tmp")
    temporary.write_text(json.dumps(figures), encoding="utf-8")
    os.replace(temporary, result_path)
    return 0


def _run(request: dict[str, Any], started: float) -> dict[str, Any]:
    from .pairs import pairs_for
    from .sfm import SfmOptions, reconstruct

    work = Path(request["work"])
    written = _write_frames(request, work / "frames")
    decoded = round(time.monotonic() - started, 2)
    common = {
        "names": written.shown,
        "total": written.total,
        "decoded_seconds": decoded,
        "streaks": written.streaks,
        "clipped": written.clipped,
        "sides": written.sides,
    }
    if len(written.names) < 2:
        return {"frames": len(written.names), "error": None, "too_few": True, **common}
    pairs = pairs_for(
        len(written.names),
        ordered=written.ordered,
        overlap=request["overlap"],
        exhaustive_up_to=request["exhaustive_up_to"],
    )
    # Mapping gets most of what is left of the time limit; the rest is the margin to finish.
    left = request["seconds"] - (time.monotonic() - started)
    options = SfmOptions(
        max_features=request["features"],
        threads=request["threads"],
        mapping_seconds=max(1.0, left * 0.6),
        pairs=pairs,
    )
    figures = _named(reconstruct(work / "frames", written.names, work, options), written)
    everything = len(written.names) * (len(written.names) - 1) // 2
    figures["matching"] = "exhaustive" if len(pairs) == everything else "sequential"
    return {**figures, "ordered": written.ordered, "pairs": len(pairs), **common}


def _write_frames(request: dict[str, Any], folder: Path) -> Any:
    from . import frames

    folder.mkdir(parents=True, exist_ok=True)
    source, limit, side = Path(request["path"]), request["frames"], request["max_side"]
    if request["kind"] == "video":
        return frames.video(source, folder, limit=limit, max_side=side, fps=request["fps"])
    return frames.photos(source, folder, limit=limit, max_side=side, threads=request["threads"])


def _named(figures: dict[str, Any], written: Any) -> dict[str, Any]:
    """The figures with each working file's name replaced by what the operator calls it."""
    shown = dict(zip(written.names, written.shown, strict=True))
    figures["left_out"] = [shown[name] for name in figures["left_out"]]
    figures["path"] = [[shown[entry[0]], *entry[1:]] for entry in figures["path"]]
    figures["view_group_members"] = [
        [written.shown[number] for number in group] for group in figures["view_group_members"]
    ]
    return figures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
