"""The console's pure parts: thumbnails, the viewer's pinned files, words, redaction."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from teleport_sync.emulator.ply import gaussian_splat_ply
from teleport_sync.web import viewer_assets, views
from teleport_sync.web.facade import safe_text
from teleport_sync.web.security import Guard
from teleport_sync.web.thumbnail import (
    BACKGROUND,
    SH_C0,
    PlyError,
    Splat,
    frame,
    read_splats,
    render,
    thumbnail_png,
)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB pixels of an unfiltered 8-bit RGB PNG (what thumbnail_png writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert body[8:10] == b"\x08\x02"  # 8-bit RGB
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 3 * width
    rows = [raw[y * (stride + 1) : (y + 1) * (stride + 1)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def test_thumbnail_of_the_emulators_model_is_a_valid_png_with_the_splats(tmp_path: Path) -> None:
    ply = tmp_path / "model.ply"
    ply.write_bytes(gaussian_splat_ply(2048, seed=7))
    width, height, pixels = decode_png(thumbnail_png(ply, 200, 150))
    assert (width, height) == (200, 150)
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 3)}
    painted = sum(1 for i in range(0, len(pixels), 3) if pixels[i : i + 3] != bytes(BACKGROUND))
    assert painted > 0.15 * width * height  # a sphere of splats fills a good part of the frame
    assert len(colours) > 500  # coloured from each splat's DC term, not one flat colour


def test_colour_comes_from_the_sh_dc_term() -> None:
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
        + b"".join(f"property float {n}\n".encode() for n in ("x", "y", "z"))
        + b"".join(f"property float f_dc_{c}\n".encode() for c in range(3))
        + b"property float opacity\nend_header\n"
    )
    body = struct.pack("<7f", 0, 0, 0, 1.0, 0.0, -1.0, 30.0)
    (splat,) = read_splats(header + body)
    assert splat.rgb == pytest.approx((0.5 + SH_C0, 0.5, 0.5 - SH_C0))
    assert splat.alpha == pytest.approx(1.0)
    pixels = render([splat], 10, 10)
    centre = 3 * (5 * 10 + 5)
    assert pixels[centre : centre + 3] == bytes(round(255 * c) for c in splat.rgb)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not a ply", "not a PLY"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n", "ascii"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\n"
            b"property float y\nproperty float z\nend_header\n" + b"\0" * 12,
            "truncated",
        ),
    ],
)
def test_unreadable_models_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(PlyError, match=why):
        read_splats(data)


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return out.getvalue()


def test_viewer_files_are_unpacked_only_when_their_hash_matches(tmp_path: Path) -> None:
    tarball = _tarball(
        {
            "package/build/gaussian-splats-3d.module.js": b"import * as THREE from 'three';\n",
            "package/LICENSE": b"MIT",
        }
    )
    good = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    pin = viewer_assets.Pinned(
        "@mkkellogg/gaussian-splats-3d",
        "0.4.7",
        good,
        {
            "package/build/gaussian-splats-3d.module.js": "gaussian-splats-3d.module.js",
            "package/LICENSE": "LICENSE-gaussian-splats-3d.txt",
        },
    )
    viewer_assets.unpack(pin, tarball, tmp_path)
    module = (tmp_path / "gaussian-splats-3d.module.js").read_text()
    assert module == "import * as THREE from './three.module.min.js';\n"
    assert (tmp_path / "LICENSE-gaussian-splats-3d.txt").read_bytes() == b"MIT"

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    with pytest.raises(viewer_assets.IntegrityError, match="hash mismatch"):
        viewer_assets.unpack(pin, tarball + b"\0", tampered)
    assert list(tampered.iterdir()) == []


def test_every_pin_names_an_exact_version_and_a_sha512() -> None:
    for pin in viewer_assets.PINNED:
        assert pin.version.count(".") == 2 and pin.version.replace(".", "").isdigit()
        assert pin.integrity.startswith("sha512-")
        assert pin.tarball_url("https://registry.npmjs.org").endswith(f"-{pin.version}.tgz")


def test_page_text_loses_url_queries_and_secrets() -> None:
    text = (
        "PUT https://s3.example/bucket/key?partNumber=1&X-Amz-Signature=abc123 failed; "
        "Authorization: Bearer eyJhbGciOi.secret"
    )
    shown = safe_text(text)
    assert shown is not None
    assert "abc123" not in shown and "partNumber" not in shown and "eyJhbGciOi" not in shown
    assert "https://s3.example/bucket/key?…" in shown


def test_phase_in_words_is_the_status_reports() -> None:
    # One derivation (phases.derive, tested in test_phases): the console shows what status says.
    row = {"upload_state": "pending", "phase": "held", "reason": "over budget by 3 frames"}
    assert views.phase_of(row) == ("held", "over budget by 3 frames")


def test_timeline_durations() -> None:
    steps = [
        ("noticed", "2026-01-01T10:00:00+00:00"),
        ("capture created", None),
        ("UPLOADED", "2026-01-01T10:02:05+00:00"),
        ("READY", "2026-01-01T11:30:05+00:00"),
    ]
    done = views.timeline(steps, "2026-01-01T12:00:00+00:00", finished=True)
    assert [(s["label"], s["lasted"]) for s in done] == [
        ("noticed", "2 min 05 s"),
        ("UPLOADED", "1 h 28 min"),
        ("READY", ""),
    ]
    running = views.timeline(steps[:3], "2026-01-01T10:02:08+00:00")
    assert running[-1]["lasted"] == "3.0 s so far"


@pytest.mark.parametrize(
    ("listen_host", "token", "header", "allowed"),
    [
        ("127.0.0.1", None, "127.0.0.1:8765", True),
        ("127.0.0.1", None, "localhost:8765", True),
        ("127.0.0.1", None, "LOCALHOST:8765", True),
        ("127.0.0.1", None, "[::1]:8765", True),
        ("127.0.0.1", None, "attacker.example:8765", False),
        ("127.0.0.1", None, "localhost:9999", False),
        ("127.0.0.1", None, "localhost:notaport", False),
        ("127.0.0.1", None, None, False),
        ("192.168.1.5", "t", "192.168.1.5:8765", True),
        ("192.168.1.5", "t", "rebound.example:8765", False),
        ("0.0.0.0", "t", "studio-nas.lan:8765", True),
    ],
)
def test_host_guard(listen_host: str, token: str | None, header: str | None, allowed: bool) -> None:
    assert Guard(listen_host, 8765, token).host_allowed(header) is allowed


def test_the_3d_view_starts_where_the_model_is() -> None:
    data = gaussian_splat_ply(500, seed=3)
    splats = [
        Splat(s.x * 5 + 100, s.y * 5 - 40, s.z * 5 + 7, s.rgb, s.alpha) for s in read_splats(data)
    ]
    (x, y, z), radius = frame(splats)
    assert (x, y, z) == pytest.approx((100, -40, 7), abs=1.0)
    assert radius == pytest.approx(5, rel=0.1)  # the sphere of radius 5 around that centre


@pytest.mark.parametrize(
    ("phase", "upload_state", "error", "says"),
    [
        ("failed", "uploaded", "NOT_ENOUGH_FRAMES: too few images", "more overlap"),
        ("failed", "uploaded", "no-images: the zip archive contains no images", "no photos"),
        ("failed", "uploaded", "SOMETHING_NEW: words", "Upload a new version"),
        ("failed", "failed", "HTTP 500 from storage", "retried by itself"),
        ("rejected", "rejected", "the zip archive is empty", "changed file"),
        ("done", "uploaded", None, None),
    ],
)
def test_failures_come_with_advice(
    phase: str, upload_state: str, error: str | None, says: str | None
) -> None:
    advice = views.advice(phase, upload_state, error)
    assert (advice is None) if says is None else (says in str(advice))


def test_throughput_counts_progress_as_it_moves_over_a_sliding_window() -> None:
    from teleport_sync.status.throughput import SlidingRate

    now = [100.0]
    rate = SlidingRate(5.0, clock=lambda: now[0])
    assert rate.per_second() == 0.0  # nothing moved: idle
    for _ in range(20):  # 2 MiB/s for 4 s, in blocks
        rate.add(512 * 1024)
        now[0] += 0.25
    assert rate.per_second() == pytest.approx(2 * 1024 * 1024, rel=0.1)
    rate.add(-1024 * 1024)  # an attempt that failed is taken back: not progress
    assert rate.per_second() == pytest.approx(1.75 * 1024 * 1024, rel=0.1)
    now[0] += 5.1  # the upload ended more than a window ago
    assert rate.per_second() == 0.0
    rate.add(1024 * 1024)  # a new upload's first block is no spike of a MiB per millisecond
    assert rate.per_second() == pytest.approx(1024 * 1024)


def test_long_names_may_wrap_only_after_their_separators() -> None:
    shown = str(views.breakable("/srv/inbox/north facade_2026-12-04.zip"))
    assert shown == "/<wbr>srv/<wbr>inbox/<wbr>north <wbr>facade_<wbr>2026-<wbr>12-<wbr>04.<wbr>zip"
    assert str(views.breakable("<b>&x.zip")) == "&lt;b&gt;&amp;x.<wbr>zip"  # still escaped


def test_a_rows_preflight_warning_outlives_its_upload_and_an_approved_hold_keeps_it() -> None:
    reasons = ["8 images; at least 20 wanted (min_frames)"]
    warned = {"verdict": "warn", "reasons": reasons}
    assert views.preflight_warning(warned) == f"pre-flight warns: {reasons[0]}"
    held = {"verdict": "hold", "reasons": reasons, "approved_at": None}
    assert views.preflight_warning(held) is None  # the row's reason says it is held, and why
    approved = {**held, "approved_at": "2026-12-04T16:00:00+00:00"}
    assert views.preflight_warning(approved) == (
        f"pre-flight held it, then it was approved: {reasons[0]}"
    )
    assert views.preflight_warning({"verdict": "ok", "reasons": []}) is None
    assert views.preflight_warning(None) is None
