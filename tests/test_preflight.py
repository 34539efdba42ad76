"""Pre-flight on real files made by ffmpeg and `zip`: the verdicts, and figures that move the
right way (a blurred photo is less sharp, a dark one more crushed, a standing camera repeats)."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from teleport_sync.config import PreflightSettings
from teleport_sync.preflight import load_decoders
from teleport_sync.preflight.check import Checked, check_file

from .media import filtered, make_photos, make_scene, make_video, needs_tools, zip_folder

pytest.importorskip("av", reason="the preflight extra is not installed")
pytestmark = needs_tools


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene") / "scene.png")


def photos(scene: Path, tmp_path: Path, count: int = 24) -> list[Path]:
    return make_photos(scene, tmp_path / "photos", count)


def check(path: Path, **keys: object) -> Checked:
    return check_file(path, PreflightSettings(**keys))  # type: ignore[arg-type]


def measure(checked: Checked, name: str) -> dict[str, object]:
    return next(m for m in checked.as_json()["measures"] if m["measure"] == name)


def test_a_sharp_walk_of_photos_is_ok(scene: Path, tmp_path: Path) -> None:
    photos(scene, tmp_path)
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "walk.zip"))
    assert checked.result.verdict == "ok", checked.result.reasons
    assert checked.result.reasons == ()
    assert checked.result.figures["frames"] == 24 and checked.result.figures["judged"] == 24
    assert measure(checked, "blur")["value"] == 0
    assert measure(checked, "duplicates")["value"] == 0
    assert measure(checked, "resolution")["value"] == 720
    assert all(m["rule"] for m in checked.as_json()["measures"])  # each figure says its rule


def test_blurred_photos_warn_and_are_named_worst(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path)
    for photo in shot[5:11]:  # 6 of 24: more than max_bad_fraction (20 %)
        filtered(photo, "gblur=sigma=4")
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "shaky.zip"))
    assert checked.result.verdict == "warn"
    [reason] = [r for r in checked.result.reasons if "blurred" in r]
    assert "6 of 24 frames blurred" in reason
    named = reason.split("(")[1].split(" and ")[0].split(", ")  # the worst first
    assert set(named) <= {f"photos/{p.name}" for p in shot[5:11]}
    assert "blur_ratio" in reason  # the key that sets the rule
    worst = checked.as_json()["worst_frames"]
    assert {w["name"] for w in worst} <= {f"photos/{p.name}" for p in shot[5:11]}
    assert all("sharpness" in w["why"] for w in worst)
    assert {name for name, _ in checked.thumbnails} == {w["name"] for w in worst}
    assert all(jpeg.startswith(b"\xff\xd8") for _, jpeg in checked.thumbnails)


def test_a_few_blurred_photos_are_figures_not_reasons(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path)
    filtered(shot[3], "gblur=sigma=4")
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "one.zip"))
    assert checked.result.verdict == "ok"
    assert measure(checked, "blur")["value"] == 1
    assert checked.as_json()["worst_frames"][0]["name"] == "photos/IMG_0004.jpg"


def test_photos_blurred_throughout_are_named_by_the_absolute_floor(
    scene: Path, tmp_path: Path
) -> None:
    sharp = check(zip_folder(photos(scene, tmp_path)[0].parent, tmp_path / "sharp.zip"))
    make_photos(scene, tmp_path / "smeared", 24, vf=["gblur=sigma=8"])
    archive = zip_folder(tmp_path / "smeared", tmp_path / "smeared.zip")
    checked = check(archive)
    # Relative to its own median nothing stands out: only the floor sees it.
    assert measure(checked, "blur")["ok"] is True and measure(checked, "blur")["value"] == 0
    floor = measure(checked, "sharpness")
    assert floor["ok"] is False and measure(sharp, "sharpness")["ok"] is True
    assert float(measure(sharp, "sharpness")["value"]) > 100 * float(floor["value"])
    assert checked.result.verdict == "warn"
    [reason] = checked.result.reasons
    assert reason.startswith("most photos are smeared or blurred throughout: median sharpness ")
    assert ", 24 of 24 under 10 (smeared/IMG_" in reason
    assert reason.endswith("at least 10, an absolute floor (min_sharpness)")
    assert all(w["why"].startswith("smeared: sharpness") for w in checked.as_json()["worst_frames"])
    assert check(archive, min_sharpness=0).result.verdict == "ok"  # 0 turns the floor off
    assert check(archive, min_sharpness=1).result.verdict == "ok"


def test_the_floor_default_is_the_measured_one() -> None:
    from teleport_sync.preflight.measures import SHARPNESS_FLOOR

    assert PreflightSettings().min_sharpness == SHARPNESS_FLOOR


def test_dark_photos_and_the_hold_action(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path)
    for photo in shot[:8]:
        filtered(photo, "lutyuv=y=val*0.03")
    archive = zip_folder(tmp_path / "photos", tmp_path / "night.zip")
    checked = check(archive, action="hold")
    assert checked.result.verdict == "hold"
    assert any("8 of 24 frames badly exposed" in r for r in checked.result.reasons)
    assert "too dark" in checked.as_json()["worst_frames"][0]["why"]
    off = check(archive, clipped_fraction=0)  # 0 turns the rule off
    assert measure(off, "exposure")["ok"] is None
    assert not any("exposed" in r for r in off.result.reasons)


def test_a_camera_that_stood_still_gives_duplicates(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path, 20)
    for photo in shot[10:]:
        shutil.copy(shot[9], photo)  # the last ten photos all show photo 10's view
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "tripod.zip"))
    assert checked.result.verdict == "warn"
    assert measure(checked, "duplicates")["value"] == 10
    assert any("neighbours near-identical" in r for r in checked.result.reasons)


def test_too_few_photos(scene: Path, tmp_path: Path) -> None:
    photos(scene, tmp_path, 8)
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "few.zip"))
    assert checked.result.reasons == ("8 images; at least 20 wanted (min_frames)",)
    assert check(tmp_path / "few.zip", min_frames=5).result.verdict == "ok"


def test_a_corrupt_photo_is_named_not_a_traceback(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path)
    data = shot[4].read_bytes()
    shot[4].write_bytes(data[: len(data) // 3])  # cut short, as a failed copy leaves it
    shot[7].write_bytes(b"\xff\xd8\xff\xe0 not a picture at all")
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "broken.zip"))
    [reason] = [r for r in checked.result.reasons if "cannot be decoded" in r]
    assert reason.startswith("2 of 24 cannot be decoded: photos/IMG_0005.jpg ")
    assert "photos/IMG_0008.jpg" in reason
    assert checked.result.figures["judged"] == 22  # the others are still judged
    worst = [w["name"] for w in checked.as_json()["worst_frames"][:2]]
    assert worst == ["photos/IMG_0005.jpg", "photos/IMG_0008.jpg"]


def test_png_photos_and_exif_orientation(scene: Path, tmp_path: Path) -> None:
    from PIL import Image

    from teleport_sync.preflight.images import decode_grey

    make_photos(scene, tmp_path / "photos", 21, suffix="png")
    checked = check(zip_folder(tmp_path / "photos", tmp_path / "png.zip"))
    assert checked.result.figures["judged"] == 21 and checked.result.verdict == "ok"
    # A camera held upright stores landscape pixels and an orientation tag (6: turn right).
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(make_photos(scene, tmp_path / "one", 1)[0]).save(out, "JPEG", exif=exif)
    grey, stored = decode_grey(out.getvalue())
    assert stored == (960, 720)
    assert grey.size[1] > grey.size[0]  # judged upright


def test_heic_without_pillow_heif_is_skipped_not_failed(scene: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photos(scene, tmp_path, 21)
    (folder / "IMG_9999.heic").write_bytes(b"\0\0\0\x18ftypheic not decodable here")
    archive = zip_folder(folder, tmp_path / "mixed.zip")
    without = load_decoders(_refusing("pillow_heif"))
    checked = check_file(archive, PreflightSettings(), without)
    assert checked.result.figures["skipped"] == 1 and checked.result.figures["unreadable"] == 0
    assert checked.result.verdict == "ok"


def test_a_sharp_video_is_ok_with_its_length_and_rate(scene: Path, tmp_path: Path) -> None:
    video = make_video(scene, tmp_path / "walk.mp4", seconds=10)
    checked = check(video, sample_frames=20)
    assert checked.result.verdict == "ok", checked.result.reasons
    figures = checked.result.figures
    assert figures["frames"] == 300 and figures["fps"] == 30
    assert figures["duration_seconds"] == pytest.approx(10, abs=0.1)
    assert figures["judged"] == 20 and figures["sampling"] == "20 frames spread evenly"
    assert measure(checked, "video_seconds")["ok"] is True


def test_a_blurred_stretch_of_video_is_found_by_time(scene: Path, tmp_path: Path) -> None:
    video = make_video(
        scene, tmp_path / "shaky.mp4", seconds=10, vf=["gblur=sigma=5:enable='between(t,4,7)'"]
    )
    checked = check(video, sample_frames=20)
    assert checked.result.verdict == "warn"
    blurred = [w["name"] for w in checked.as_json()["worst_frames"] if "sharpness" in w["why"]]
    assert blurred and all("0:04" <= name <= "0:07.99" for name in blurred)


def test_short_slow_and_standing_videos(scene: Path, tmp_path: Path) -> None:
    short = check(make_video(scene, tmp_path / "short.mp4", seconds=2), min_frames=0)
    assert any("2.0 s of video; at least 5 s" in r for r in short.result.reasons)
    slow = check(make_video(scene, tmp_path / "slow.mp4", seconds=6, fps=8, keyint=8))
    assert any("8 frames per second; at least 15 (min_fps)" in r for r in slow.result.reasons)
    tripod = check(make_video(scene, tmp_path / "tripod.mp4", seconds=10, still_from=3))
    assert any("neighbours near-identical" in r for r in tripod.result.reasons)


def test_sparse_keyframes_are_judged_alone_rather_than_decoding_it_all(
    scene: Path, tmp_path: Path
) -> None:
    video = make_video(scene, tmp_path / "sparse.mp4", seconds=20, keyint=300)
    checked = check(video, sample_frames=10)
    assert checked.result.figures["keyframes"] == 2
    assert checked.result.figures["sampling"].startswith("2 keyframes only")


def test_an_mp4_that_does_not_decode_is_a_reason(tmp_path: Path) -> None:
    from .helpers import make_mp4

    checked = check(make_mp4(tmp_path / "noise.mp4", 256 * 1024))
    assert checked.result.verdict == "warn"
    assert any("no frame was decoded" in r or "the video" in r for r in checked.result.reasons)


def test_without_the_extra_it_says_what_is_missing_and_the_fix() -> None:
    found = load_decoders(_refusing("av"))
    assert not found.ok
    assert found.reason is not None
    assert "av cannot be imported" in found.reason
    assert "pip install 'teleport-sync[preflight]'" in found.reason


def _refusing(name: str) -> object:
    import importlib

    def importer(module: str) -> ModuleType:
        if module == name or module.startswith(name + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return importlib.import_module(module)

    return importer


def test_zip_members_are_read_in_name_order(scene: Path, tmp_path: Path) -> None:
    shot = photos(scene, tmp_path, 3)
    archive = tmp_path / "shuffled.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for photo in reversed(shot):
            out.write(photo, f"p/{photo.name}")
    from teleport_sync.preflight.images import image_members

    with zipfile.ZipFile(archive) as opened:
        assert [i.filename for i in image_members(opened)] == [f"p/{p.name}" for p in shot]


def test_heic_photos_are_judged_with_pillow_heif(scene: Path, tmp_path: Path) -> None:
    heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    from PIL import Image

    heif.register_heif_opener()
    folder = tmp_path / "heic"
    folder.mkdir()
    for photo in photos(scene, tmp_path, 21):
        Image.open(photo).save(folder / photo.with_suffix(".heic").name, "HEIF", quality=80)
    checked = check(zip_folder(folder, tmp_path / "iphone.zip"))
    assert checked.result.figures["judged"] == 21 and checked.result.figures["skipped"] == 0
    assert checked.result.verdict == "ok", checked.result.reasons
