"""Structure from motion over a folder of downscaled frames, with COLMAP's own bindings.

Runs only in the pose check's child process (`child`): pycolmap is native code that can abort,
and its mapper can run for minutes. Steps, each bounded: SIFT features (a capped count per
frame), matching over the pairs `pairs.pairs_for` chose, the view graph read back from the
database (which pairs are pure rotation, their triangulation angles, its connected groups),
then incremental mapping under a time cap. Figures come from the largest model COLMAP built.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycolmap

from .pairs import groups

# The two-view configurations in which the camera only turned (or saw one plane): no depth.
ROTATION_ONLY = {
    int(pycolmap.TwoViewGeometryConfiguration.PANORAMIC),
    int(pycolmap.TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC),
}
# What the 3D view gets at most: enough to see the scene's shape, small in the journal.
POINTS_SHOWN = 3000
# SIFT's first octave: COLMAP doubles every frame before detecting (-1), which finds the
# smallest details at four times the pixels. Frames this large have enough detail at their own
# size (0), and detection costs a quarter: 72 s -> 17 s for 100 frames of 1024 px. Smaller
# frames (the tests' renders, small videos) keep the doubling or they lose half their features.
FULL_SIZE_FROM = 640


@dataclass(frozen=True)
class SfmOptions:
    max_features: int = 2048
    threads: int = 2
    mapping_seconds: float = 60.0
    # Pairs to match (indices into the frames), from `pairs.pairs_for`.
    pairs: Sequence[tuple[int, int]] = ()
    min_inliers: int = 15


Progress = Callable[[str], None]


def reconstruct(
    folder: Path,
    names: Sequence[str],
    work: Path,
    options: SfmOptions,
    progress: Progress = lambda step: None,
) -> dict[str, Any]:
    """Figures of the frames in `folder` (files named as `names`, in capture order)."""
    started = time.monotonic()
    database = work / "database.db"
    progress("features")
    _extract(database, folder, names, options)
    features_seconds = time.monotonic() - started
    progress("matching")
    ids = _image_ids(database)
    _match(database, work, names, options)
    graph = _view_graph(database, ids, names, options.min_inliers)
    matching_seconds = time.monotonic() - started - features_seconds
    progress("mapping")
    mapping_started = time.monotonic()
    models = _map(database, folder, work, options)
    mapping_seconds = time.monotonic() - mapping_started
    return {
        "frames": len(names),
        "features": graph.pop("features"),
        **graph,
        **_largest(models, names),
        "seconds": {
            "features": round(features_seconds, 2),
            "matching": round(matching_seconds, 2),
            "mapping": round(mapping_seconds, 2),
        },
        "mapping_capped": mapping_seconds >= options.mapping_seconds * 0.98,
    }


def _extract(database: Path, folder: Path, names: Sequence[str], options: SfmOptions) -> None:
    """Features of every frame, one camera per frame size: COLMAP's single-camera mode skips a
    frame whose size is not the first one's, so a portrait photo among landscape ones had no
    features at all and was called a bare surface (and a set whose first photo was large had
    every smaller frame skipped). Frames of one size share their camera, as one lens does."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for name in names:
        by_size.setdefault(_size(folder / name), []).append(name)
    for (width, height), group in by_size.items():
        _extract_group(database, folder, group, options, max(width, height))


def _extract_group(
    database: Path, folder: Path, names: Sequence[str], options: SfmOptions, longest: int
) -> None:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = options.threads
    extraction.use_gpu = False
    extraction.max_image_size = 4096  # the frames are already downscaled; never resized again
    extraction.sift.max_num_features = options.max_features
    extraction.sift.first_octave = 0 if longest >= FULL_SIZE_FROM else -1
    # One orientation per keypoint: a second one adds ~40 % descriptors to every match for
    # frames that differ little in roll, and a pose check needs evidence, not every match.
    extraction.sift.max_num_orientations = 1
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    pycolmap.extract_features(
        database,
        folder,
        image_names=list(names),
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def _size(frame: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(frame) as picture:
        return picture.size


def _match(database: Path, work: Path, names: Sequence[str], options: SfmOptions) -> None:
    pair_list = work / "pairs.txt"
    pair_list.write_text(
        "".join(f"{names[a]} {names[b]}\n" for a, b in options.pairs), encoding="utf-8"
    )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.threads
    matching.use_gpu = False
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(pair_list)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = options.min_inliers
    pycolmap.match_image_pairs(
        database,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=pycolmap.Device.cpu,
    )


def _image_ids(database: Path) -> dict[int, str]:
    with pycolmap.Database.open(database) as db:
        return {image.image_id: image.name for image in db.read_all_images()}


def _view_graph(
    database: Path, ids: dict[int, str], names: Sequence[str], min_inliers: int
) -> dict[str, Any]:
    """Per frame its feature count; per verified pair its kind and angle; the graph's groups."""
    index = {name: number for number, name in enumerate(names)}
    with pycolmap.Database.open(database) as db:
        features = [0] * len(names)
        for image_id, name in ids.items():
            features[index[name]] = db.num_keypoints_for_image(image_id)
        pair_ids, geometries = db.read_two_view_geometries()
    edges: list[tuple[int, int]] = []
    rotation_only = 0
    kinds: dict[str, int] = {}
    for pair_id, geometry in zip(pair_ids, geometries, strict=True):
        if len(geometry.inlier_matches) < min_inliers:
            continue
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        edges.append((index[ids[first]], index[ids[second]]))
        kind = pycolmap.TwoViewGeometryConfiguration(geometry.config).name
        kinds[kind] = kinds.get(kind, 0) + 1
        if int(geometry.config) in ROTATION_ONLY:
            rotation_only += 1
    connected = groups(len(names), edges)
    return {
        "features": features,
        "verified_pairs": len(edges),
        "rotation_only_pairs": rotation_only,
        "pair_kinds": kinds,
        "view_groups": [len(g) for g in connected],
        "view_group_members": connected,
    }


def _map(
    database: Path, folder: Path, work: Path, options: SfmOptions
) -> dict[int, pycolmap.Reconstruction]:
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = options.threads
    mapping.max_runtime_seconds = max(1, int(options.mapping_seconds))
    mapping.min_model_size = 3
    mapping.extract_colors = True
    mapping.random_seed = 1  # the same set gives the same verdict
    # A verdict needs which frames pose, not the last tenth of a pixel: bundle adjustment is
    # refined once (not 2 and 5 times), its iterations capped, and the global one run when the
    # model grew by 40 % (not 10 %). Mapping 100 frames: 23 s -> 12 s, the same frames posed.
    mapping.ba_local_max_refinements = 1
    mapping.ba_global_max_refinements = 1
    mapping.ba_local_max_num_iterations = 25
    mapping.ba_global_max_num_iterations = 30
    mapping.ba_global_frames_ratio = 1.4
    mapping.ba_global_points_ratio = 1.4
    mapping.mapper.ba_global_ignore_redundant_points3D = True
    output = work / "sparse"
    output.mkdir(exist_ok=True)
    return pycolmap.incremental_mapping(database, folder, output, mapping)


def _largest(models: dict[int, pycolmap.Reconstruction], names: Sequence[str]) -> dict[str, Any]:
    """The figures of the model with the most posed frames (never simply model 0)."""
    ranked = sorted(models.values(), key=lambda m: -m.num_reg_images())
    pieces = [m.num_reg_images() for m in ranked]
    if not ranked:
        return {
            "posed": 0,
            "pieces": [],
            "left_out": list(names),
            "points": 0,
            "parallax_median": None,
            "track_length_mean": None,
            "reprojection_error": None,
            "cloud": [],
            "path": [],
        }
    best = ranked[0]
    index = {name: number for number, name in enumerate(names)}
    posed = sorted((index[image.name], image) for image in best.images.values() if image.has_pose)
    posed_names = {names[number] for number, _ in posed}
    points = list(best.points3D.values())
    stride = max(1, math.ceil(len(points) / POINTS_SHOWN))
    return {
        "posed": len(posed),
        "pieces": pieces,
        "left_out": [name for name in names if name not in posed_names],
        "points": len(points),
        "parallax_median": _parallax(best, points[::stride]),
        "track_length_mean": round(best.compute_mean_track_length(), 2) if points else None,
        "reprojection_error": round(best.compute_mean_reprojection_error(), 3) if points else None,
        "cloud": [
            [*(round(float(c), 3) for c in p.xyz), *(int(c) for c in p.color)]
            for p in points[::stride]
        ],
        "path": [
            [names[number], *(round(float(c), 3) for c in image.projection_center())]
            for number, image in posed
        ],
    }


def _parallax(model: pycolmap.Reconstruction, points: Sequence[Any]) -> float | None:
    """The median, over points, of the widest angle (degrees) between the rays that see it.

    A camera that only turned sees every point along one ray: angles near 0. Points seen from
    a walk around a subject span tens of degrees."""
    centres = {
        image_id: image.projection_center()
        for image_id, image in model.images.items()
        if image.has_pose
    }
    widest: list[float] = []
    for point in points:
        seen = [centres[e.image_id] for e in point.track.elements if e.image_id in centres]
        ends = seen[:: max(1, len(seen) // 6)]  # a few rays suffice for the widest angle
        best = 0.0
        for i, first in enumerate(ends):
            for second in ends[i + 1 :]:
                best = max(best, pycolmap.calculate_triangulation_angle(first, second, point.xyz))
        widest.append(math.degrees(best))
    return round(statistics.median(widest), 2) if widest else None
