"""Results: layout per input and profile, both metadata shapes, Range resumption, flat memory."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from teleport_sync.api import TeleportClient, TransientError
from teleport_sync.emulator.artefacts import model_files
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.logging import configure_logging
from teleport_sync.results import (
    FileAccess,
    ModelOptions,
    fetch_models,
    file_names,
    plan_models,
    read_models,
    result_folder,
    storable_url,
)
from teleport_sync.retry import RetryPolicy

from .helpers import set_knobs
from .test_api import client_for, upload_bytes, zip_of_images

PROFILES = ["ply", "sogs-sh0", "fragment-chunk1", "fragment-float16"]


def ready_capture(emulator: EmulatorServer, client: TeleportClient, name: str) -> tuple[str, str]:
    """Upload a small zip and let processing finish: (eid, sid)."""
    emulator.backend.monotonic = time.monotonic
    eid = upload_bytes(client, name, zip_of_images(), "bulk-images")
    emulator.backend.monotonic = lambda: time.monotonic() + 10**6  # processing is done
    capture = client.find_capture(eid)
    assert capture is not None and capture.state == "READY" and capture.sid
    return eid, capture.sid


def model_calls(emulator: EmulatorServer) -> list[tuple[str, int, str | None]]:
    return [(c.path, c.status, c.range) for c in emulator.stats.snapshot() if c.kind == "model"]


# -- naming and reading ---------------------------------------------------------------------


def test_file_names_say_single_file_or_chunk() -> None:
    model = read_models({"models": [{"url": "https://cdn/x/a.ply?sig=1", "size": 1}]}, "ply")
    assert file_names("ply", model) == ["model.ply"]
    chunks = read_models({"models": [{"url": "https://c/0.bin", "size": 1}] * 2}, "fragment-x")
    assert file_names("fragment-float16", chunks) == ["0.bin", "1.bin"]
    assert file_names("fragment-chunk1", chunks[:1]) == ["0.bin"]  # chunks always numbered
    assert file_names("sogs-sh0", read_models({"models": [{"url": "u", "size": 1}]}, "s")) == [
        "model.bin"
    ]


def test_result_folders_never_meet_across_roots() -> None:
    res = Path("/r")
    one = [Path("/in")]
    assert result_folder(res, Path("/in/site/chair.zip"), one) == Path("/r/site/chair.zip")
    assert result_folder(res, Path("/in/chair.mp4"), one) == Path("/r/chair.mp4")
    two = [Path("/a/inbox"), Path("/b/drop")]
    assert result_folder(res, Path("/a/inbox/x.zip"), two) == Path("/r/inbox/x.zip")
    assert result_folder(res, Path("/b/drop/x.zip"), two) == Path("/r/drop/x.zip")
    same_name = [Path("/a/inbox"), Path("/b/inbox")]
    assert result_folder(res, Path("/b/inbox/x.zip"), same_name) == Path("/r/b/inbox/x.zip")
    # Outside every root (`upload --follow` of a file elsewhere): its name, as a person files it.
    assert result_folder(res, Path("/tmp/x.zip"), one) == Path("/r/x.zip")
    nested = [Path("/in/vip"), Path("/in")]  # a [[watch.folder]] inside a [watch] path
    assert result_folder(res, Path("/in/vip/x.zip"), nested) == Path("/r/vip/x.zip")
    assert result_folder(res, Path("/in/x.zip"), nested) == Path("/r/x.zip")


def test_both_metadata_shapes_parse_and_say_which(tmp_path: Path) -> None:
    log = io.StringIO()
    saved = structlog.get_config()
    configure_logging("DEBUG", "json", stream=log)
    try:
        array = {
            "profile_name": "fragment-float16",
            "models": [
                {"url": "https://c/0.bin", "size": 3},
                {"url": "https://c/1.bin", "size": 4},
            ],
        }
        keyed = {
            "profile_name": "ply,fragment-float16",
            "models": {
                "ply": {"url": "https://c/m.ply", "size": 9},
                "fragment-float16": [{"url": "https://c/0.bin", "size": 3}],
            },
        }
        assert [m.size for m in read_models(array, "fragment-float16")] == [3, 4]
        assert [m.url for m in read_models(keyed, "ply")] == ["https://c/m.ply"]
        assert [m.size for m in read_models(keyed, "fragment-float16")] == [3]
        assert read_models(keyed, "sogs-sh0") == []
        # An array naming another profile is not this profile's models.
        assert read_models({**array, "profile_name": "ply"}, "fragment-float16") == []
    finally:
        structlog.configure(**saved)  # other tests capture what the daemon logs
    events = [json.loads(line)["event"] for line in log.getvalue().splitlines()]
    assert "metadata models: array of SegmentModel" in events
    assert "metadata models: object keyed by profile" in events


@pytest.mark.parametrize("shape", ["array", "object"])
def test_every_profile_from_the_emulator_intact_one_request_each(
    emulator: EmulatorServer, tmp_path: Path, shape: str
) -> None:
    set_knobs(emulator, metadata_models_shape=shape)
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "chair.zip")
        options = ModelOptions(quality="sd", lod=True, use_cdn=False)
        plan = plan_models(client, sid, [*PROFILES, "ksplat-v2-compress0"], tmp_path, options)
        fetch_models(client, plan)
    assert plan.missing == ["ksplat-v2-compress0"]
    for profile in PROFILES:
        for name, data in model_files(profile, "sd"):
            assert (tmp_path / profile / name).read_bytes() == data, f"{profile}/{name}"
    assert plan.by_profile()["fragment-float16"] == [
        str(tmp_path / "fragment-float16" / n) for n in ("0.bin", "1.bin")
    ]
    bundle = zipfile.ZipFile(tmp_path / "sogs-sh0" / "model.zip")
    assert len(bundle.namelist()) == 6 and "meta.json" in bundle.namelist()
    queries = [c.query for c in emulator.stats.snapshot() if c.path.endswith("/metadata")]
    assert len(queries) == 5  # one per profile asked for
    for query, profile in zip(queries, [*PROFILES, "ksplat-v2-compress0"], strict=True):
        assert query == f"profiles={profile}&quality=sd&lod=true&use_cdn=false"
    assert not list(tmp_path.rglob("*.part"))


# -- resumable downloads --------------------------------------------------------------------


def test_a_dropped_download_resumes_with_range(emulator: EmulatorServer, tmp_path: Path) -> None:
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "scan.zip")
        set_knobs(emulator, model_drops=1, model_drop_after_bytes=40_000)
        plan = plan_models(client, sid, ["ply"], tmp_path, ModelOptions())
        fetch_models(client, plan)
    [(_, expected)] = model_files("ply")
    assert (tmp_path / "ply" / "model.ply").read_bytes() == expected
    [first, second] = model_calls(emulator)
    assert first[1:] == (200, None)
    assert second[1:] == (206, "bytes=40000-")  # asked only for what was missing


def test_a_part_file_left_by_a_crash_is_continued_but_never_another_files(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    [(_, expected)] = model_files("fragment-chunk1")[:1]
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "scan.zip")
        _, other_sid = ready_capture(emulator, client, "scan.zip")
        client.policy = RetryPolicy(max_attempts=1)  # the process "dies" at the first error
        set_knobs(emulator, model_drops=1, model_drop_after_bytes=1000)
        plan = plan_models(client, sid, ["fragment-chunk1"], tmp_path, ModelOptions())
        with pytest.raises(TransientError):
            fetch_models(client, plan)
        part = tmp_path / "fragment-chunk1" / "0.bin.part"
        assert part.stat().st_size == 1000

        fetch_models(client, plan)  # the next run
        assert (tmp_path / "fragment-chunk1" / "0.bin").read_bytes() == expected
        assert model_calls(emulator)[1][2] == "bytes=1000-"

        # A .part left for another capture's model (a replaced input) starts over.
        set_knobs(emulator, model_drops=1, model_drop_after_bytes=1000)
        with pytest.raises(TransientError):
            fetch_models(client, plan_models(client, sid, ["ply"], tmp_path, ModelOptions()))
        client.policy = RetryPolicy(max_attempts=3, base_delay=0.01)
        fetch_models(client, plan_models(client, other_sid, ["ply"], tmp_path, ModelOptions()))
    assert model_calls(emulator)[-1][0].split("/")[3] == other_sid
    assert model_calls(emulator)[-1][2] is None
    assert (tmp_path / "ply" / "model.ply").read_bytes() == model_files("ply")[0][1]
    assert not list(tmp_path.rglob("*.part*"))


def _serving(data: bytes, honour_range: bool) -> tuple[httpx.MockTransport, list[str | None]]:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        wanted = request.headers.get("Range")
        asked.append(wanted)
        if wanted and honour_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return httpx.Response(416, headers={"Content-Range": f"bytes */{len(data)}"})
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            return httpx.Response(206, content=data[start:], headers=headers)
        return httpx.Response(200, content=data)

    return httpx.MockTransport(handler), asked


@pytest.mark.parametrize("honour_range", [False, True])
def test_resuming_against_servers_that_ignore_or_refuse_range(
    emulator: EmulatorServer, tmp_path: Path, honour_range: bool
) -> None:
    data = os.urandom(5000)
    target = tmp_path / "m.bin"
    # A stale .part longer than the file (a different model before): it must not survive.
    target.with_name("m.bin.part").write_bytes(b"x" * 6000 if honour_range else data[:100])
    target.with_name("m.bin.part.src").write_text(f"http://cdn.test/m.bin {len(data)}")
    transport, asked = _serving(data, honour_range)
    with client_for(emulator) as client:
        client.storage = httpx.Client(transport=transport)
        assert client.download("http://cdn.test/m.bin", target, expected_size=len(data)) == 5000
    assert target.read_bytes() == data
    assert asked == ([None] if honour_range else ["bytes=100-"])


def test_a_wrong_size_is_retried_then_reported(emulator: EmulatorServer, tmp_path: Path) -> None:
    transport, _ = _serving(b"short", honour_range=True)
    with client_for(emulator) as client:
        client.storage = httpx.Client(transport=transport)
        with pytest.raises(TransientError, match="the metadata said 10"):
            client.download("http://cdn.test/m.bin", tmp_path / "m.bin", expected_size=10)
    assert not (tmp_path / "m.bin").exists()


FLAT_MEMORY_SCRIPT = """
import sys
from pathlib import Path
from teleport_sync.api import build_client
url, token_url, cid, secret, model_url, size, target = sys.argv[1:]
with build_client(base_url=url, auth_url=token_url, client_id=cid, client_secret=secret) as c:
    c.download(model_url, Path(target), expected_size=int(size))
# VmHWM: this program's peak RSS. (ru_maxrss would also count the parent's RSS at fork time,
# which Linux carries across exec: pytest's own size, not ours.)
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def test_a_1_gib_model_downloads_with_flat_memory(emulator: EmulatorServer, tmp_path: Path) -> None:
    set_knobs(emulator, model_bytes=1 << 30)
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "big.zip")
        [item] = plan_models(client, sid, ["ply"], tmp_path, ModelOptions()).files
    cfg = emulator.config
    target = tmp_path / "model.ply"
    argv = [emulator.url, emulator.token_url, cfg.client_id, cfg.client_secret]
    argv += [item.model.url, str(item.model.size), str(target)]
    done = subprocess.run(
        [sys.executable, "-c", FLAT_MEMORY_SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    assert target.stat().st_size == item.model.size > 1 << 29
    with target.open("rb") as model:
        assert model.read(4) == b"ply\n"
        model.seek(-4096, os.SEEK_END)
        assert model.read() == bytes(4096)
    target.unlink()
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB for a 1 GiB model"


# -- file access and journal safety -----------------------------------------------------------


def test_models_are_private_whatever_the_umask_until_mode_shares_them(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    old = os.umask(0o022)  # a login shell's: without the rule, models would be world-readable
    try:
        with client_for(emulator) as client:
            _, sid = ready_capture(emulator, client, "scan.zip")
            target = tmp_path / "results" / "scan.zip"
            fetch_models(client, plan_models(client, sid, ["ply"], target, ModelOptions()))
    finally:
        os.umask(old)
    model = target / "ply" / "model.ply"
    assert stat.S_IMODE(model.stat().st_mode) == 0o600
    for folder in (model.parent, target, target.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # `[results] mode` is the way to share them (the next test: mode and group applied).


def test_mode_and_group_reach_models_and_their_folders(tmp_path: Path) -> None:
    model = tmp_path / "results" / "a.zip" / "ply" / "model.ply"
    model.parent.mkdir(parents=True, mode=0o700)
    model.write_bytes(b"ply\n")
    model.chmod(0o600)
    for folder in (tmp_path / "results", tmp_path / "results" / "a.zip"):
        folder.chmod(0o700)
    (tmp_path / "results").chmod(0o2700)  # setgid: how a studio folder hands on its group
    FileAccess(tmp_path / "results", mode=0o640, group=str(os.getgid())).apply(model)
    assert stat.S_IMODE(model.stat().st_mode) == 0o640
    for folder in (model.parent, model.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o2750
    assert stat.S_IMODE(tmp_path.stat().st_mode) != 0o750  # above the results root: untouched
    with pytest.raises(OSError, match=r"\[results\] group"):
        FileAccess(tmp_path, group="no-such-group-here").apply(model)


def test_viewer_urls_are_stored_without_signatures() -> None:
    assert storable_url("https://teleport.test/v/abc") == "https://teleport.test/v/abc"
    assert storable_url("https://cdn.test/v/abc?Signature=zz&x=1") == "https://cdn.test/v/abc"
    assert storable_url(None) is None


# -- the daemon: layout per input, previews, viewer, mode -----------------------------------


def test_same_stem_inputs_keep_every_profile_apart(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """chair.zip and chair.mp4 in one folder, three profiles: every file kept, named by both."""
    from .helpers import MIB, make_mp4, make_zip, wait_for
    from .test_daemon import Running, all_ready, rows, settings_for

    hook_log = tmp_path / "hook.log"
    hook = [
        sys.executable,
        "-c",
        f"import os; open({str(hook_log)!r}, 'a').write(os.environ['TELEPORT_VIEWER_URL'] + '\\n')",
    ]
    profiles = ["ply", "sogs-sh0", "fragment-float16"]
    results = {"dir": tmp_path / "results", "profiles": profiles, "mode": "0640", "previews": True}
    settings = settings_for(emulator, tmp_path, results=results, actions={"on_ready": hook})
    inbox = settings.watch.paths[0]
    make_zip(inbox / "chair.zip")
    make_mp4(inbox / "chair.mp4", 1 * MIB)
    with Running(settings):
        wait_for(all_ready(settings, {"chair.zip", "chair.mp4"}), 60, "both READY with models")
        wait_for(lambda: len(hook_log.read_text().split()) == 2 if hook_log.exists() else False)
    status = rows(settings)
    for name in ("chair.zip", "chair.mp4"):
        folder = tmp_path / "results" / name
        row = status[name]
        expected = {p: [str(folder / p / n) for n, _ in model_files(p)] for p in profiles}
        assert row["results_by_profile"] == expected
        for profile in profiles:
            for file_name, data in model_files(profile):
                model = folder / profile / file_name
                assert model.read_bytes() == data, model
                assert stat.S_IMODE(model.stat().st_mode) == 0o640
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750
        largest = (folder / "preview.png").read_bytes()
        assert largest.startswith(b"\x89PNG") and b"IHDR\x00\x00\x03\x81\x00\x00\x04\xac" in largest
        assert (folder / "preview.gif").read_bytes().startswith(b"GIF89a")
        assert row["preview_paths"] == [str(folder / "preview.png"), str(folder / "preview.gif")]
        # Metadata v2's extras beside the models, 0640 like them.
        extras = [str(folder / "metadata.json"), str(folder / "cameras.json")]
        assert all(stat.S_IMODE(Path(p).stat().st_mode) == 0o640 for p in extras)
        all_paths = [p for paths in expected.values() for p in paths] + extras
        assert row["result_paths"] == all_paths + row["preview_paths"]
        assert str(row["viewer_url"]).startswith(emulator.url)
        assert row["result_error"] is None
    assert sorted(hook_log.read_text().split()) == sorted(
        str(status[n]["viewer_url"]) for n in ("chair.zip", "chair.mp4")
    )


# -- `download` --------------------------------------------------------------------------------


def test_download_command_writes_every_chunk_and_refuses_to_overwrite(
    emulator: EmulatorServer, config_file: Path, tmp_path: Path
) -> None:
    from .test_cli import run_cli

    with client_for(emulator) as client:
        eid, _ = ready_capture(emulator, client, "chair.zip")
    out = tmp_path / "out"
    args = ["--config", str(config_file), "download", eid, "--out", str(out)]
    first = run_cli(*args, "--profile", "fragment-float16", "--quality", "sd")
    assert first.returncode == 0, first.stderr
    folder = out / "chair.zip" / "fragment-float16"
    for name, data in model_files("fragment-float16", "sd"):
        assert (folder / name).read_bytes() == data
        assert f"fragment-float16\t{folder / name}" in first.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["0.bin", "1.bin"]
    # The camera list comes beside them (through metadata v2, though "sd" is v1's).
    assert f"cameras\t{out / 'chair.zip' / 'cameras.json'}" in first.stdout
    assert json.loads((out / "chair.zip" / "cameras.json").read_text())["cameras"]

    again = run_cli(*args, "--profile", "fragment-float16")
    assert again.returncode == 1
    assert "not overwriting" in again.stderr and "--force" in again.stderr
    assert str(folder / "0.bin") in again.stderr
    assert (folder / "0.bin").read_bytes() == model_files("fragment-float16", "sd")[0][1]

    forced = run_cli(*args, "--profile", "fragment-float16", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "0.bin").read_bytes() == model_files("fragment-float16", "hd")[0][1]

    missing = run_cli(*args, "--profile", "ply", "--profile", "ksplat-v2-compress1")
    assert missing.returncode == 1
    assert "ksplat-v2-compress1" in missing.stderr
    assert (out / "chair.zip" / "ply" / "model.ply").read_bytes() == model_files("ply")[0][1]


# -- a failed download: kept, shown, retried with backoff -------------------------------------


def _ready_row(journal: Any, path: Path, eid: str, sid: str) -> Any:
    """A journal row for `path` whose capture is READY, as the poller leaves it."""
    from teleport_sync.models import FileIdentity

    row = journal.register(str(path), FileIdentity(1, 2, 3, 4, "f"), "zip", path.name)
    journal.record_created(row.id, eid, 8 << 20, 1)
    journal.mark_uploaded(row.id, "UPLOADED")
    journal.record_state(row.id, "READY", sid)
    return row


def test_a_failed_download_is_journaled_and_retried_with_backoff(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from teleport_sync.config import ActionsSettings, ResultsSettings
    from teleport_sync.journal import Journal
    from teleport_sync.results.actions import Actions

    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    inbox = tmp_path / "inbox"

    def metadata_requests() -> int:
        return sum(1 for c in emulator.stats.snapshot() if c.path.endswith("/metadata"))

    with client_for(emulator) as client, Journal(tmp_path / "j.sqlite3") as journal:
        eid, sid = ready_capture(emulator, client, "scan.zip")
        row = _ready_row(journal, inbox / "scan.zip", eid, sid)
        actions = Actions(
            client,
            journal,
            results=ResultsSettings(),
            actions=ActionsSettings(),
            roots=[inbox],
            results_dir=blocker,
            now=lambda: clock[0],
        )
        actions.run_for(journal.get(row.id))
        failed = journal.get(row.id)
        assert failed.result_error and str(blocker) in failed.result_error
        assert "[results] dir" in failed.result_error
        assert failed.result_attempts == 1
        assert datetime.fromisoformat(str(failed.result_next_at)) == clock[0] + timedelta(
            seconds=30
        )
        asked = metadata_requests()

        clock[0] += timedelta(seconds=29)
        actions.run_for(journal.get(row.id))  # not due yet: nothing asked
        assert metadata_requests() == asked

        clock[0] += timedelta(seconds=2)
        actions.run_for(journal.get(row.id))  # due: tried, fails again, waits twice as long
        again = journal.get(row.id)
        assert metadata_requests() == asked + 1 and again.result_attempts == 2
        assert datetime.fromisoformat(str(again.result_next_at)) == clock[0] + timedelta(seconds=60)

        blocker.unlink()
        clock[0] += timedelta(seconds=60)
        actions.run_for(journal.get(row.id))
        done = journal.get(row.id)
        assert done.result_error is None and "download" in done.actions_done
        model = blocker / "scan.zip" / "ply" / "model.ply"
        assert done.results_by_profile == {"ply": [str(model)]}
        assert model.read_bytes() == model_files("ply")[0][1]
        assert any(kind == "result_error" for kind, _ in journal.events(row.id))


def test_emulator_model_urls_answer_ranges(emulator: EmulatorServer) -> None:
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "scan.zip")
        [item] = read_models(client.metadata_json(sid, profiles=["sogs-sh0"]), "sogs-sh0")
    [(_, data)] = model_files("sogs-sh0")
    assert item.size == len(data)
    with httpx.Client() as http:  # no Authorization header: a CDN URL
        whole = http.get(item.url)
        middle = http.get(item.url, headers={"Range": "bytes=10-19"})
        tail = http.get(item.url, headers={"Range": "bytes=-5"})
        beyond = http.get(item.url, headers={"Range": f"bytes={len(data)}-"})
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert middle.status_code == 206 and middle.content == data[10:20]
    assert middle.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert tail.status_code == 206 and tail.content == data[-5:]
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"


def test_the_typed_metadata_accepts_the_keyed_shape_too(emulator: EmulatorServer) -> None:
    set_knobs(emulator, metadata_models_shape="object")
    with client_for(emulator) as client:
        _, sid = ready_capture(emulator, client, "scan.zip")
        metadata = client.metadata(sid, profiles=["ply", "fragment-chunk1"])
    sizes = [len(data) for p in ("ply", "fragment-chunk1") for _, data in model_files(p)]
    assert [m.size for m in metadata.models] == sizes


def test_status_shows_download_errors_and_viewer_links(
    emulator: EmulatorServer, config_file: Path, tmp_path: Path
) -> None:
    from teleport_sync.journal import Journal

    from .test_cli import run_cli

    with Journal(tmp_path / "journal.sqlite3") as journal:
        row = _ready_row(journal, tmp_path / "inbox" / "a.zip", "e1", "s1")
        journal.record_result_error(row.id, "cannot write /srv/[x]: denied", "2026-01-01T00:00:30")
        journal.record_viewer_url(row.id, "https://viewer.test/s1")
    shown = run_cli("--config", str(config_file), "status", env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    # Phase downloading, and its reason names the error (brackets kept, not markup).
    assert "the download failed and is retried: cannot write /srv/[x]: denied" in shown.stdout
    assert "viewer of a.zip: https://viewer.test/s1" in shown.stdout
    [as_json] = json.loads(run_cli("--config", str(config_file), "status", "--json").stdout)
    assert as_json["result_error"] == "cannot write /srv/[x]: denied"
    assert as_json["result_next_at"] == "2026-01-01T00:00:30"
    assert as_json["viewer_url"] == "https://viewer.test/s1"


def test_previews_that_cannot_be_saved_leave_the_models_done(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from teleport_sync.config import ActionsSettings, ResultsSettings
    from teleport_sync.journal import Journal
    from teleport_sync.results.actions import Actions

    inbox = tmp_path / "inbox"
    with client_for(emulator) as client, Journal(tmp_path / "j.sqlite3") as journal:
        _, sid = ready_capture(emulator, client, "scan.zip")
        # The eid is not in the listing (deleted since): models by sid work, previews cannot.
        row = _ready_row(journal, inbox / "scan.zip", "gone-eid", sid)
        results = ResultsSettings(previews=True)
        actions = Actions(
            client,
            journal,
            results=results,
            actions=ActionsSettings(),
            roots=[inbox],
            results_dir=tmp_path / "results",
        )
        actions.run_for(row)
        done = journal.get(row.id)
    assert "download" in done.actions_done and done.preview_paths == []
    assert (tmp_path / "results" / "scan.zip" / "ply" / "model.ply").exists()
    assert "previews not saved" in str(done.result_error) and done.result_next_at is None
