"""The same bytes under a new name (issue 31): `second_take.zip` = `scan.zip`, a camera's
`CAM_0001.MP4` copied twice. Held by default naming the earlier file and its capture, warned or
allowed by `[upload] duplicates`; `approve` uploads it anyway. Content, not names: a file whose
fingerprint matches but whose middle differs is not a duplicate."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from teleport_sync.control import Control
from teleport_sync.control.duplicates import find_duplicate, same_bytes
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs import identify
from teleport_sync.journal import Journal

from .helpers import MIB, make_mp4, make_zip, wait_for
from .test_cli import run_cli
from .test_faults import DaemonProcess, daemon_config, status


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=32, chunk_size=5 * MIB, processing_delay_seconds=0.2)


def ready(config: Path, name: str) -> bool:
    return status(config).get(name, {}).get("capture_state") == "READY"


def captures(emulator: EmulatorServer) -> list[str]:
    return sorted(c.name for c in emulator.backend.captures.values())


def test_a_copy_is_held_naming_the_first_and_approve_uploads_it(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    (inbox / "day1").mkdir()
    (inbox / "day2").mkdir()
    make_zip(inbox / "scan.zip")
    make_mp4(inbox / "day1" / "CAM_0001.MP4", 2 * MIB)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: ready(config, "scan.zip"), 30, "the first upload")
        wait_for(lambda: ready(config, "CAM_0001.MP4"), 30, "the camera file")
        first = status(config)
        shutil.copyfile(inbox / "scan.zip", inbox / "second_take.zip")
        shutil.copyfile(inbox / "day1" / "CAM_0001.MP4", inbox / "day2" / "CAM_0001.MP4")
        wait_for(
            lambda: status(config).get("second_take.zip", {}).get("phase") == "held",
            30,
            "the copy held",
        )
        wait_for(
            lambda: [r["phase"] for r in _rows(config) if "day2" in r["path"]] == ["held"],
            30,
            "the camera copy held",
        )
        held = status(config)["second_take.zip"]
        assert str(inbox / "scan.zip") in held["reason"]
        assert first["scan.zip"]["eid"] in held["reason"]
        assert f"approve {inbox / 'second_take.zip'}" in held["reason"]
        assert len(captures(emulator)) == 2, "nothing paid twice"

        approved = run_cli("--config", str(config), "approve", str(inbox / "second_take.zip"))
        assert approved.returncode == 0, approved.stderr
        wait_for(lambda: ready(config, "second_take.zip"), 30, "the approved copy uploaded")
    finally:
        assert daemon.stop() == 0
    assert captures(emulator) == ["CAM_0001.MP4", "scan.zip", "second_take.zip"]
    assert "held: the same bytes as a file already uploaded" in daemon.log.read_text()


def _rows(config: Path) -> list[dict[str, str]]:
    out = run_cli("--config", str(config), "status", "--json").stdout
    return json.loads(out)


@pytest.mark.parametrize("mode", ["warn", "allow"])
def test_warn_and_allow_upload_the_copy(
    emulator: EmulatorServer, tmp_path: Path, mode: str
) -> None:
    config, inbox = daemon_config(tmp_path, emulator)
    config.write_text(config.read_text() + f'\n[upload]\nduplicates = "{mode}"\n')
    make_zip(inbox / "scan.zip")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: ready(config, "scan.zip"), 30, "the first upload")
        shutil.copyfile(inbox / "scan.zip", inbox / "second_take.zip")
        wait_for(lambda: ready(config, "second_take.zip"), 30, "the copy uploaded")
    finally:
        assert daemon.stop() == 0
    assert captures(emulator) == ["scan.zip", "second_take.zip"]
    warned = "uploading the same bytes again" in daemon.log.read_text()
    assert warned is (mode == "warn")


def test_content_decides_not_the_fingerprint(tmp_path: Path) -> None:
    """Same size, same first and last MiB, one byte apart in the middle: not a duplicate.
    Confirmed from the earlier upload's journaled part MD5s, even once that file is gone."""
    first = make_zip(tmp_path / "scan.zip", pad=3 * MIB)
    twin = tmp_path / "twin.zip"
    shutil.copyfile(first, twin)
    near = tmp_path / "near.zip"
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    near.write_bytes(bytes(data))
    assert identify(near).fingerprint == identify(first).fingerprint

    with Journal(tmp_path / "journal.sqlite3") as journal:
        earlier = journal.register(str(first), identify(first), "bulk-images", "scan.zip")
        journal.mark_create_intent(earlier.id, "tok")
        chunk = 2 * MIB
        size = first.stat().st_size
        parts = -(-size // chunk)
        journal.record_created(earlier.id, "eid-1", chunk, parts)
        blob = first.read_bytes()
        for n in range(parts):
            piece = blob[n * chunk : (n + 1) * chunk]
            journal.record_part(earlier.id, n + 1, len(piece), hashlib.md5(piece).hexdigest(), "e")
        first.unlink()  # moved away by done_dir, say: the journal's part MD5s still tell
        for path, expected in ((twin, True), (near, False)):
            row = journal.register(str(path), identify(path), "bulk-images", path.name)
            assert same_bytes(path, journal.get(earlier.id), journal) is expected
            found = find_duplicate(journal, row)
            assert (found.eid if found else None) == ("eid-1" if expected else None)
        control = Control(journal, duplicates="hold")
        held = control.admit(journal.by_path(str(twin)))  # type: ignore[arg-type]
        assert held is not None and "eid-1" in held and str(first) in held
        assert control.admit(journal.by_path(str(near))) is None  # type: ignore[arg-type]


def test_two_copies_dropped_together_are_paid_once(tmp_path: Path) -> None:
    """Neither has a capture yet when both are admitted: the second admitted sees the first."""
    first = make_zip(tmp_path / "scan.zip")
    copy = tmp_path / "second_take.zip"
    shutil.copyfile(first, copy)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        rows = [journal.register(str(p), identify(p), "bulk-images", p.name) for p in (first, copy)]
        control = Control(journal, duplicates="hold")
        assert control.admit(rows[0]) is None
        held = control.admit(rows[1])
        assert held is not None and str(first) in held and "being uploaded now" in held
        assert control.admit(rows[0]) is None, "the first is not held by its copy"


def test_a_copy_of_a_file_whose_name_is_not_utf8_is_held(tmp_path: Path) -> None:
    """The earlier file's name holds bytes that are not UTF-8 (an old camera's card): the hold's
    sentence names it as `\\xff` escapes. Before, journaling the sentence raised
    UnicodeEncodeError in every admission, so the copy was neither held nor uploaded, only
    'queued' for ever with a traceback in the log each retry."""
    first = make_zip(Path(os.fsdecode(bytes(tmp_path) + b"/scan\xff\xfe.zip")))
    copy = tmp_path / "second_take.zip"
    shutil.copyfile(first, copy)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        rows = [
            journal.register(str(p), identify(p), "bulk-images", "scan.zip") for p in (first, copy)
        ]
        control = Control(journal, duplicates="hold")
        assert control.admit(rows[0]) is None
        held = control.admit(rows[1])
        assert held is not None and "scan\\xff\\xfe.zip" in held and "being uploaded now" in held
        assert journal.control_facts(rows[1].id)["duplicate_reason"] is not None
