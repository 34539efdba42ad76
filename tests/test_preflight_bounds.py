"""Pre-flight stays bounded on hostile archives: pictures too large to decode are refused by
their header, zip bombs by their directory, huge sets are sampled (and say so), and a `check`
of the issue's hostile zip peaks under 512 MiB (measured in the child that ran it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from teleport_sync.config import PreflightSettings, load_settings
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.preflight.check import check_file

from .conftest import write_config
from .helpers import wait_for
from .hostile_archives import flat_png, repeated_zip, zip_bomb
from .media import ffmpeg, have_tools, make_photos, make_scene, needs_tools, zip_folder
from .test_daemon import rows

pytest.importorskip("av", reason="the preflight extra is not installed")

MIB = 1 << 20


# The child's own peak, from its /proc status at exit. (Its rusage would not do: Linux keeps
# the high-water mark of the memory it was spawned from across exec, here pytest's.)
CHECK_REPORTING_PEAK = """
import re, sys
from teleport_sync.cli import main
try:
    main()
finally:
    status = open("/proc/self/status").read()
    sys.stderr.write("peak_kib=" + re.search(r"VmHWM:\\s+(\\d+)", status).group(1) + "\\n")
"""


def run_check(path: Path, tmp_path: Path) -> tuple[dict[str, object], int, float]:
    """`teleport-sync check --json` in a child: (its result, exit code, its peak RSS in MiB)."""
    config = tmp_path / "empty.toml"
    config.touch(mode=0o600)
    args = ["--config", str(config), "check", "--json", str(path)]
    child = subprocess.run(
        [sys.executable, "-c", CHECK_REPORTING_PEAK, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    [result] = json.loads(child.stdout)
    peak_kib = int(child.stderr.rsplit("peak_kib=", 1)[1])
    return result, child.returncode, peak_kib / 1024


@pytest.fixture(scope="module")
def hostile_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's archive (1.6 GiB before): six 20000x4400 PNGs and six 9400x9400 JPEGs."""
    if not have_tools():
        pytest.skip("ffmpeg and zip are needed (Debian: apt-get install ffmpeg zip)")
    work = tmp_path_factory.mktemp("hostile")
    jpeg = work / "huge.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=9400x9400", "-frames:v", "1", "-q:v", "9", str(jpeg))
    panorama = flat_png(20000, 4400)
    archive = work / "hostile.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for i in range(6):
            out.writestr(f"pano_{i:02d}.png", panorama)
            out.write(jpeg, f"huge_{i:02d}.jpg")
    return archive


def test_the_hostile_archive_is_judged_within_512_mib(hostile_zip: Path, tmp_path: Path) -> None:
    result, _code, peak_mib = run_check(hostile_zip, tmp_path)
    assert peak_mib <= 512, f"check peaked at {peak_mib:.0f} MiB"
    figures = result["figures"]
    assert isinstance(figures, dict)
    assert (figures["judged"], figures["unreadable"]) == (6, 6)  # every JPEG, by draft mode
    [reason] = [r for r in result["reasons"] if "cannot be decoded" in r]  # type: ignore[union-attr]
    assert reason.startswith("6 of 12 cannot be decoded: pano_00.png not decoded: a 20000x4400 PNG")
    assert "over pre-flight's 256 MiB for pictures" in reason


def test_the_daemons_preflight_stays_within_512_mib_too(
    hostile_zip: Path, emulator: EmulatorServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        emulator,
        extra=f'[watch]\npaths = ["{inbox}"]\nsettle_seconds = 0.5\n[poll]\ninterval_seconds = 1\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "teleport_sync", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        shutil.copy(hostile_zip, tmp_path / "hostile.zip")
        os.replace(tmp_path / "hostile.zip", inbox / "hostile.zip")  # whole, as a copy lands
        # Judged (warn: it goes on), then uploaded: the capture exists once pre-flight is done.
        wait_for(lambda: len(emulator.backend.captures) == 1, 120, "the judged upload")
        status = Path(f"/proc/{daemon.pid}/status").read_text()
        peak_mib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert peak_mib <= 512, f"the daemon peaked at {peak_mib:.0f} MiB"
    row = rows(load_settings(config))["hostile.zip"]
    reasons = " ".join(row["preflight"]["reasons"])  # type: ignore[index]
    assert "pano_00.png not decoded: a 20000x4400 PNG" in reasons


def test_a_zip_bomb_is_refused_by_its_directory_naming_the_member(tmp_path: Path) -> None:
    """40 members of 255 MiB of zeros (10 GB inflated): not one is inflated."""
    bomb = zip_bomb(tmp_path / "bomb.zip", 40, 255 * MIB)
    result, code, peak_mib = run_check(bomb, tmp_path)
    assert peak_mib < 200, "a member was read into memory"
    assert result["verdict"] == "warn" and code == 0  # `action = "hold"` would hold it
    figures = result["figures"]
    assert isinstance(figures, dict) and figures["unreadable"] == 40
    reasons = " ".join(result["reasons"])  # type: ignore[arg-type]
    assert (
        "IMG_0000.jpg inflates to 255 MiB, over the 128 MiB pre-flight inflates from one" in reasons
    )
    assert "zip bomb" in reasons


def test_a_hundred_thousand_entries_are_sampled_in_runs_and_say_so(tmp_path: Path) -> None:
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.new("L", (8, 8), 128).save(tiny)
    archive = tmp_path / "many.zip"
    data = tiny.read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for i in range(100_000):
            out.writestr(f"IMG_{i:06d}.png", data)
    checked = check_file(archive, PreflightSettings())
    figures = checked.result.figures
    assert (figures["frames"], figures["judged"]) == (100_000, 1000)
    assert figures["sampling"].startswith("1000 of 100000 images examined, in 100 runs")
    # Neighbours are compared within runs only: 100 runs of 10 make 900 pairs, not 999.
    duplicates = next(m for m in checked.result.measures if m.name == "duplicates")
    assert duplicates.shown.startswith("900 of 900 neighbours near-identical")


def test_a_sampled_run_starts_its_neighbour_measures_afresh() -> None:
    import numpy as np

    from teleport_sync.preflight.check import walk
    from teleport_sync.preflight.frames import FrameMeasure

    still = np.ones((64, 64), np.float32)
    frames = [
        FrameMeasure(i, f"f{i}", motion=still, follows=i not in (0, 10)) for i in (0, 1, 2, 10, 11)
    ]
    _kept, pairs = walk(frames)
    assert [p.index for p in pairs] == [1, 2, 11]  # 10 is not compared with 2


def _infos(sizes: list[int]) -> list[zipfile.ZipInfo]:
    infos = []
    for i, size in enumerate(sizes):
        info = zipfile.ZipInfo(f"IMG_{i:05d}.jpg")
        info.file_size = size
        infos.append(info)
    return infos


def test_selection_spreads_runs_evenly_first_and_last_included() -> None:
    from teleport_sync.preflight.members import select

    chosen = select(_infos([1000] * 95), max_examined=30, run=10)
    indexes = [m.index for m in chosen.members]
    assert indexes == [*range(0, 10), *range(42, 52), *range(85, 95)]
    assert [m.follows for m in chosen.members].count(False) == 3
    assert chosen.sampling and chosen.sampling.startswith("30 of 95 images examined, in 3 runs")
    whole = select(_infos([1000] * 95), max_examined=100, run=10)
    assert [m.index for m in whole.members] == list(range(95)) and whole.sampling is None


def test_selection_keeps_inflated_bytes_under_the_archive_cap() -> None:
    from teleport_sync.preflight.members import select

    chosen = select(_infos([10 * MIB] * 200), max_bytes=500 * MIB, run=10)
    assert sum(m.info.file_size for m in chosen.members) <= 500 * MIB
    assert len(chosen.members) == 50 and len({m.index for m in chosen.members}) == 50
    refused = select(_infos([MIB, 300 * MIB, MIB]))
    assert [m.refused is not None for m in refused.members] == [False, True, False]


def test_the_memory_budget_makes_a_decode_wait_and_refuses_what_never_fits() -> None:
    from teleport_sync.preflight.budget import MemoryBudget, TooLarge

    budget = MemoryBudget(100)
    over = pytest.raises(TooLarge, match="a panorama would take 1 MiB to decode, over")
    with over, budget.reserve(101, "a panorama"):
        pass
    entered = threading.Event()
    with budget.reserve(60, "first"):
        waiting = threading.Thread(target=lambda: _reserve_then(budget, 60, entered))
        waiting.start()
        assert not entered.wait(0.2)  # 60 + 60 > 100: the second waits for the first
        assert budget.used == 60
    waiting.join(5)
    assert entered.is_set() and budget.used == 0


def _reserve_then(budget: object, cost: int, entered: threading.Event) -> None:
    with budget.reserve(cost, "second"):  # type: ignore[attr-defined]
        entered.set()


@needs_tools
def test_the_worst_frames_strip_never_decodes_a_refused_picture(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    make_photos(make_scene(tmp_path / "scene.png"), folder, 21)
    (folder / "IMG_0011b.png").write_bytes(flat_png(20000, 4400))
    checked = check_file(zip_folder(folder, tmp_path / "set.zip"), PreflightSettings())
    worst = [w.name for w in checked.result.worst]
    assert "photos/IMG_0011b.png" in worst
    assert "photos/IMG_0011b.png" not in [name for name, _ in checked.thumbnails]


def test_check_prints_how_a_large_set_was_sampled(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from teleport_sync.cli import main

    tiny = tmp_path / "tiny.png"
    Image.new("L", (8, 8), 128).save(tiny)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for i in range(1100):
            out.write(tiny, f"IMG_{i:04d}.png")
    config = tmp_path / "empty.toml"
    config.touch(mode=0o600)
    result = CliRunner().invoke(main, ["--config", str(config), "check", str(archive)])
    assert "  sampled: 1000 of 1100 images examined, in 100 runs" in result.output


@needs_tools
def test_video_frames_over_8k_are_refused_before_decoding(tmp_path: Path) -> None:
    """(8K itself is decoded a frame at a time: its peak RSS is in bench/preflight.py --hostile.)"""
    path = tmp_path / "over.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:s=8448x4352:r=4", "-t", "1", "-c:v", "libx264",
        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    result, _code, peak_mib = run_check(path, tmp_path)
    assert peak_mib < 200  # not one frame decoded
    reasons = " ".join(result["reasons"])  # type: ignore[arg-type]
    assert "the video has 8448x4352 frames, larger than pre-flight decodes" in reasons


def test_a_directory_of_a_quarter_million_entries_is_counted_not_read(tmp_path: Path) -> None:
    """(A million entries took 47 s and 693 MiB before: zipfile holds every entry.)"""
    archive = repeated_zip(tmp_path / "entries.zip", 250_000, b"x")
    result, _code, peak_mib = run_check(archive, tmp_path)
    assert peak_mib < 256
    reasons = " ".join(result["reasons"])  # type: ignore[arg-type]
    assert "the zip holds 250000 entries, more than pre-flight reads from one archive's" in reasons


def test_a_pictures_cost_is_what_decoding_it_takes(tmp_path: Path) -> None:
    """The estimate against the growth of a child's peak RSS when it decodes (a PNG and a
    WebP of 25 MP, whose decoder keeps buffers of its own): never under it by more than 10 %."""
    from PIL import Image

    from teleport_sync.preflight.budget import decode_cost

    for name, kind in (("p.png", "PNG"), ("w.webp", "WEBP")):
        path = tmp_path / name
        Image.new("RGB", (5000, 5000), (10, 200, 30)).save(path, kind)
        measure = (
            "import re\n"
            "from teleport_sync.preflight.budget import MemoryBudget\n"
            "from teleport_sync.preflight.images import decode_grey\n"
            "def peak():\n"
            "    status = open('/proc/self/status').read()\n"
            "    return int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
            f"data = open({str(path)!r}, 'rb').read()\n"
            "before = peak()\n"
            "decode_grey(data, MemoryBudget(1 << 40))\n"
            "print(peak() - before)\n"
        )
        run = [sys.executable, "-c", measure]
        grew = int(subprocess.run(run, capture_output=True, text=True, check=True).stdout) * 1024
        with Image.open(path) as image:
            cost = decode_cost(image.mode, image.size, image.format)
        assert cost >= 0.9 * grew, (name, cost >> 20, grew >> 20)


@needs_tools
def test_a_member_that_fails_its_crc_is_named_and_the_others_judged(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    make_photos(make_scene(tmp_path / "scene.png"), folder, 21)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for photo in sorted(folder.iterdir()):
            out.write(photo, photo.name)
    with zipfile.ZipFile(archive) as opened:
        info = opened.getinfo("IMG_0005.jpg")
    data = bytearray(archive.read_bytes())
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[at : at + 64] = bytes(64)  # a damaged stretch: the stored CRC no longer matches
    archive.write_bytes(bytes(data))
    checked = check_file(archive, PreflightSettings())
    assert checked.result.figures["judged"] == 20
    [reason] = [r for r in checked.result.reasons if "cannot be" in r]
    assert reason.startswith("1 of 21 cannot be decoded: IMG_0005.jpg cannot be read (Bad CRC-32")


def test_a_decoder_seeking_to_and_fro_through_a_member_is_stopped() -> None:
    """zipfile pays a member's size for each jump back and forth; four passes are allowed."""
    import io

    from teleport_sync.preflight.images import Metered

    size = 8 << 20
    stream = Metered(io.BytesIO(bytes(size)), size)
    assert len(stream.read()) == size  # one pass
    stream.seek(0)
    stream.seek(size - 1)  # a jump to the end reads through the whole member: two passes
    stream.seek(16)
    with pytest.raises(OSError, match="back and forth through it past 4 times its size"):
        for _ in range(3):
            stream.seek(size - 1)
            stream.seek(16)
    steady = Metered(io.BytesIO(bytes(size)), size)
    while steady.read(65536):  # a decoder reading forward never gets near the limit
        pass
