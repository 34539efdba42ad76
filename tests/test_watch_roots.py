"""Watch roots re-checked while running; network file systems detected and polled."""

from __future__ import annotations

import threading
from pathlib import Path

from teleport_sync.config import WatchSettings
from teleport_sync.watch.mounts import filesystem_type, is_network_fs, parse_mountinfo
from teleport_sync.watch.watcher import Watcher

from .helpers import wait_for

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:50 / /mnt/nas rw,relatime - nfs4 nas:/export rw
41 27 0:51 / /mnt/smb\\040share rw,relatime - cifs //srv/share rw
42 27 0:52 / /mnt/nas/inner rw,relatime - fuse.sshfs host: rw
"""


def test_mountinfo_types_and_network_detection() -> None:
    assert ("/mnt/smb share", "cifs") in parse_mountinfo(MOUNTINFO)
    assert filesystem_type(Path("/mnt/nas/inbox"), MOUNTINFO) == "nfs4"
    assert filesystem_type(Path("/mnt/nas/inner/x"), MOUNTINFO) == "fuse.sshfs"
    assert filesystem_type(Path("/mnt/smb share/in"), MOUNTINFO) == "cifs"
    assert filesystem_type(Path("/home/me"), MOUNTINFO) == "ext4"
    assert filesystem_type(Path("/mnt/nasty"), MOUNTINFO) == "ext4"  # not inside /mnt/nas
    assert [is_network_fs(t) for t in ("nfs4", "cifs", "fuse.sshfs", "ext4", None)] == [
        True,
        True,
        True,
        False,
        False,
    ]


class Settled:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.arrived = threading.Event()

    def __call__(self, path: Path, root: Path) -> None:
        self.paths.append(path)
        self.arrived.set()


def test_missing_root_appears_file_root_is_reported_and_replaced_root_rewatched(
    tmp_path: Path,
) -> None:
    late, as_file = tmp_path / "late", tmp_path / "a-file"
    as_file.write_text("not a folder")
    settled = Settled()
    watcher = Watcher(WatchSettings(paths=[late, as_file], settle_seconds=0.1), settled)
    watcher.start()
    try:
        statuses = {s["path"]: s for s in watcher.root_statuses()}
        assert not statuses[str(late)]["watched"]
        assert "does not exist" in statuses[str(late)]["problem"]
        assert "is a file, not a folder" in statuses[str(as_file)]["problem"]
        assert not watcher.check_roots()  # nothing changed: nothing said again

        late.mkdir()
        (late / "early.zip").write_bytes(b"PK")  # there before the watch: found by the scan
        assert watcher.check_roots()
        assert settled.arrived.wait(10)
        assert settled.paths == [late / "early.zip"]
        assert {s["path"]: s["watched"] for s in watcher.root_statuses()}[str(late)]

        # Replaced: deleted and made again (a remount gives a new device or inode too).
        (late / "early.zip").unlink()
        late.rmdir()
        late.mkdir()
        settled.arrived.clear()
        wait_for(watcher.check_roots, 10, "the replaced root to be watched anew")
        (late / "after.zip").write_bytes(b"PK")
        assert settled.arrived.wait(10), "the new folder is not watched"
        assert settled.paths[-1] == late / "after.zip"
    finally:
        watcher.stop()


def test_a_root_on_a_network_file_system_is_polled(tmp_path: Path) -> None:
    inbox = tmp_path / "nas"
    inbox.mkdir()
    fake = (
        f"27 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 27 0:50 / {inbox.resolve()} rw - nfs4 nas:/x rw\n"
    )
    settled = Settled()
    watcher = Watcher(
        WatchSettings(paths=[inbox], settle_seconds=0.1),
        settled,
        mountinfo=lambda: fake,
        network_poll_seconds=0.2,
    )
    watcher.start()
    try:
        [status] = watcher.root_statuses()
        assert status["watched"] and status["polled"] and status["filesystem"] == "nfs4"
        (inbox / "from-another-machine.mp4").write_bytes(b"x")
        assert settled.arrived.wait(10)
    finally:
        watcher.stop()
    assert settled.paths == [inbox / "from-another-machine.mp4"]
