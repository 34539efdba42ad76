"""The web console over real HTTP: a real daemon, the emulator, real SQLite, real inotify."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console

from teleport_sync.cli import main
from teleport_sync.cli.demo import run_demo
from teleport_sync.config import ConfigError, load_settings
from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.inputs import identify
from teleport_sync.journal import Journal
from teleport_sync.web.server import ConsoleServer

from .conftest import write_config
from .helpers import MIB, make_zip, wait_for
from .test_daemon import Running, rows, settings_for


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=15, chunk_size=5 * MIB, processing_delay_seconds=0.5)


@pytest.fixture
def console(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Running]:
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0"})
    with Running(settings) as running:
        yield running


def client(running: Running) -> httpx.Client:
    assert running.daemon.web_url is not None
    return httpx.Client(base_url=running.daemon.web_url, timeout=10)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def ready(running: Running, name: str) -> bool:
    row = rows(running.daemon.settings).get(name)
    return bool(row and row["capture_state"] == "READY" and row["result_paths"])


def test_overview_lists_a_just_uploaded_file(console: Running, tmp_path: Path) -> None:
    make_zip(tmp_path / "inbox" / "fresh-scan.zip", images=2)
    wait_for(
        lambda: (
            rows(console.daemon.settings).get("fresh-scan.zip", {}).get("upload_state")
            == "uploaded"
        ),
        what="the upload",
    )
    with client(console) as http:
        page = http.get("/")
        files = http.get("/files", params={"phase": "processing"})
    assert page.status_code == 200
    assert "fresh-scan.zip" in page.text
    assert str(tmp_path / "inbox") in page.text  # the watch root, with its state
    assert "watched" in page.text
    assert files.status_code == 200


def test_a_foreign_host_is_refused(console: Running) -> None:
    port = httpx.URL(console.daemon.web_url or "").port
    with client(console) as http:
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 421
        assert http.get("/", headers={"Host": f"evil.example:{port}"}).status_code == 421
        assert http.get("/", headers={"Host": f"localhost:{port + 1}"}).status_code == 421
        assert http.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert http.get("/").status_code == 200  # 127.0.0.1:port


def test_posts_need_the_csrf_token_and_this_origin(console: Running) -> None:
    with client(console) as http:
        token = csrf_of(http.get("/").text)
        foreign = http.post(
            "/actions/forget",
            data={"file_id": "1"},
            headers={"Origin": "http://evil.example"},
        )
        no_token = http.post("/actions/forget", data={"file_id": "1"})
        wrong_origin = http.post(
            "/actions/forget",
            data={"file_id": "1", "csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        ours = http.post("/actions/forget", data={"file_id": "999", "csrf": token})
    assert foreign.status_code == 403
    assert no_token.status_code == 403
    assert wrong_origin.status_code == 403
    assert ours.status_code == 303  # carried out (here: "no such file", said on the page)
    assert "refused=no+such+file" in ours.headers["location"]


def test_forget_drops_a_finished_row_and_keeps_the_capture(
    console: Running, tmp_path: Path, emulator: EmulatorServer
) -> None:
    make_zip(tmp_path / "inbox" / "old.zip", images=2)
    wait_for(lambda: ready(console, "old.zip"), what="READY and downloaded")
    with client(console) as http:
        listing = http.get("/files").text
        token = csrf_of(listing)
        file_id = re.search(r'href="/files/(\d+)"', listing).group(1)  # type: ignore[union-attr]

        def forget() -> dict[str, object]:
            answer = http.post(
                "/actions/forget",
                data={"file_id": file_id, "csrf": token},
                headers={"Accept": "application/json"},
            )
            return answer.json()  # type: ignore[no-any-return]

        # Still in the watch folder: forgotten, it would be uploaded again.
        kept = forget()
        assert not kept["ok"] and "still in a watch folder" in str(kept["message"])
        assert "old.zip" in rows(console.daemon.settings)
        (tmp_path / "inbox" / "old.zip").rename(tmp_path / "old.zip")
        dropped = forget()
    assert dropped["ok"], dropped
    assert "old.zip" not in rows(console.daemon.settings)
    assert len(emulator.backend.captures) == 1  # only the journal row went


def test_retry_now_takes_a_failed_file_at_once(emulator: EmulatorServer, tmp_path: Path) -> None:
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0"})
    path = make_zip(tmp_path / "inbox" / "flaky.zip", images=2)
    # A file that failed before this run and is not due again for an hour.
    with Journal(settings.journal.path) as journal:
        record = journal.register(str(path), identify(path), "bulk-images", "flaky.zip")
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        journal.mark_failed(record.id, f"{path}: HTTP 500 from storage", later)
    with Running(settings) as running, client(running) as http:
        assert rows(settings)["flaky.zip"]["upload_state"] == "failed"
        page = http.get(f"/files/{record.id}")
        assert "Retry now" in page.text and "HTTP 500 from storage" in page.text
        answer = http.post(
            "/actions/retry",
            data={"file_id": str(record.id), "csrf": csrf_of(page.text), "next": "/files"},
        )
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/files?done=retrying")
        wait_for(
            lambda: rows(settings)["flaky.zip"]["upload_state"] == "uploaded",
            timeout=15,
            what="the retried upload",
        )


def test_capture_page_timeline_results_and_pictures_show_no_secret(
    console: Running, tmp_path: Path, emulator: EmulatorServer
) -> None:
    make_zip(tmp_path / "inbox" / "room.zip", images=2)
    wait_for(lambda: ready(console, "room.zip"), what="READY and downloaded")
    ply = Path(rows(console.daemon.settings)["room.zip"]["result_paths"][0])  # type: ignore[index]
    with client(console) as http:
        listing = http.get("/files").text
        file_id = re.search(r'href="/files/(\d+)"', listing).group(1)  # type: ignore[union-attr]
        page = http.get(f"/files/{file_id}")
        fragment = http.get(f"/fragments/files/{file_id}")
        download = http.get(f"/files/{file_id}/results/0/{ply.name}")
        thumb = http.get(f"/files/{file_id}/thumbnail.png")
        outside = http.get(f"/files/{file_id}/results/5/passwd")
    assert page.status_code == 200 and fragment.status_code == 200
    for step in ("noticed", "capture created", "UPLOADED", "READY"):
        assert f"<td>{step}</td>" in page.text
    assert ply.name in page.text and "KiB" in page.text
    assert download.content == ply.read_bytes()
    assert thumb.headers["content-type"] == "image/png" and thumb.content.startswith(b"\x89PNG")
    assert outside.status_code == 404
    for text in (listing, page.text, fragment.text):
        assert emulator.config.client_secret not in text
        assert "X-Amz" not in text and "Signature" not in text


def test_a_network_listen_needs_a_token(tmp_path: Path, emulator: EmulatorServer) -> None:
    config = write_config(tmp_path / "config.toml", emulator, '[web]\nlisten = "0.0.0.0:8765"\n')
    with pytest.raises(ConfigError, match=r"\[web\]: listen = .0.0.0.0:8765. .*token"):
        load_settings(config)
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"])
    assert result.exit_code == 2
    assert "token" in result.output
    write_config(
        tmp_path / "config.toml", emulator, '[web]\nlisten = "0.0.0.0:8765"\ntoken = "t0ken-xyz"\n'
    )
    assert load_settings(config).web.token_value() == "t0ken-xyz"


def test_the_token_opens_the_console_once_and_is_never_shown(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    secret = "a-long-console-token-123"
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0", "token": secret})
    with Running(settings) as running, client(running) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", params={"token": "wrong"}).status_code == 401
        login = http.get("/files", params={"token": secret, "phase": "done"})
        assert login.status_code == 303
        assert login.headers["location"] == "/files?phase=done"  # the token leaves the URL
        assert secret not in login.headers["set-cookie"]
        page = http.get("/files")  # the cookie, from now on
        bearer = httpx.get(
            f"{running.daemon.web_url}api/files", headers={"Authorization": f"Bearer {secret}"}
        )
    assert page.status_code == 200
    assert secret not in page.text
    assert bearer.status_code == 200 and bearer.json() == []


def test_a_token_file_others_can_read_is_refused(tmp_path: Path, emulator: EmulatorServer) -> None:
    token_file = tmp_path / "web_token"
    token_file.write_text("s3cret-token-value\n")
    token_file.chmod(0o644)
    config = write_config(
        tmp_path / "config.toml",
        emulator,
        f'[web]\nlisten = "0.0.0.0:8765"\ntoken_file = "{token_file}"\n',
    )
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"])
    assert result.exit_code == 2
    assert "chmod 600" in result.output and "s3cret" not in result.output
    token_file.chmod(0o600)
    assert load_settings(config).web.token_value() == "s3cret-token-value"


def test_the_demo_off_a_terminal_advertises_no_console_and_removes_its_folder() -> None:
    out = io.StringIO()
    code = run_demo(Console(file=out, width=200), timeout=90, interactive=False)
    text = out.getvalue()
    assert code == 0, text
    assert "Both captures are READY" in text
    assert "web console:" not in text and "http://127.0.0.1:8765" not in text  # gone at once
    found = re.search(r"demo in (\S+) \(a temporary folder, removed when the demo ends", text)
    assert found, text
    folder = Path(found.group(1))
    assert not folder.exists() and f"Removed the demo's folder {folder}." in text
    assert "--config" not in text  # no hint at a journal or an emulator that are gone
    assert "teleport-sync demo --keep" in text  # how to have a look next time


def test_the_demo_with_keep_stays_up_after_its_summary_and_keeps_its_folder() -> None:
    out = io.StringIO()
    until = threading.Event()
    codes: list[int] = []

    def demo() -> None:
        console = Console(file=out, width=200)
        codes.append(run_demo(console, timeout=90, keep=True, interactive=False, until=until))

    thread = threading.Thread(target=demo)
    thread.start()
    try:
        wait_for(lambda: "Up until you press Ctrl-C" in out.getvalue(), 120, "the loop's end")
        text = out.getvalue()
        # The summary first, then the wait: nothing to read only after Ctrl-C.
        assert text.index("Both captures are READY") < text.index("Up until you press Ctrl-C")
        url = re.search(r"web console: (http://127\.0\.0\.1:\d+/)", text)
        assert url, text
        assert httpx.get(url.group(1), timeout=10).status_code == 200  # up, as it says
        hint = re.search(r"teleport-sync --config (\S+) status", text)
        assert hint, text
        listed = CliRunner().invoke(main, ["--config", hint.group(1), "status", "--json"])
        assert listed.exit_code == 0 and len(json.loads(listed.output)) == 2
    finally:
        until.set()
        thread.join(60)
    assert codes == [0]
    folder = Path(hint.group(1)).parent
    assert folder.is_dir() and f"Kept the demo's folder {folder}" in out.getvalue()
    assert f"rm -r {folder}" in out.getvalue()
    shutil.rmtree(folder)


def test_a_rejected_file_is_explained_on_its_page(console: Running, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "empty.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    wait_for(
        lambda: rows(console.daemon.settings).get("empty.zip", {}).get("phase") == "rejected",
        what="the rejection",
    )
    with client(console) as http:
        listing = http.get("/files", params={"phase": "rejected"}).text
        file_id = re.search(r'href="/files/(\d+)"', listing).group(1)  # type: ignore[union-attr]
        page = http.get(f"/files/{file_id}").text
    assert "empty.zip" in listing
    assert "What went wrong:" in page and "zip archive is empty" in page
    assert "What to do:" in page and "replace it" in page


def test_without_the_viewer_files_the_capture_page_shows_the_picture(
    console: Running, tmp_path: Path
) -> None:
    make_zip(tmp_path / "inbox" / "plain.zip", images=2)
    wait_for(lambda: ready(console, "plain.zip"), what="READY and downloaded")
    empty = tmp_path / "no-vendor"
    empty.mkdir()
    server = ConsoleServer(console.daemon, "127.0.0.1:0", vendor=empty).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            listing = http.get("/files").text
            file_id = re.search(r'href="/files/(\d+)"', listing).group(1)  # type: ignore[union-attr]
            page = http.get(f"/files/{file_id}").text
            picture = http.get(f"/files/{file_id}/thumbnail.png")
            module = http.get("/static/vendor/gaussian-splats-3d.module.js")
    finally:
        server.stop()
    assert 'id="thumbnail"' in page and "viewer.js" not in page
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert module.status_code == 404


def test_approve_releases_a_file_held_by_a_budget(emulator: EmulatorServer, tmp_path: Path) -> None:
    settings = settings_for(
        emulator,
        tmp_path,
        web={"listen": "127.0.0.1:0"},
        budget={"max_frames_per_capture": 2},
    )
    with Running(settings) as running, client(running) as http:
        make_zip(tmp_path / "inbox" / "big.zip", images=3)
        wait_for(lambda: rows(settings).get("big.zip", {}).get("phase") == "held", what="a hold")
        listing = http.get("/files", params={"phase": "held"}).text
        assert "big.zip" in listing and 'data-action="approve"' in listing
        file_id = re.search(r'href="/files/(\d+)"', listing).group(1)  # type: ignore[union-attr]
        answer = http.post(
            "/actions/approve",
            data={"file_id": file_id, "csrf": csrf_of(listing)},
            headers={"Accept": "application/json"},
        )
        assert answer.json() == {"ok": True, "message": f"approved {tmp_path}/inbox/big.zip"}
        wait_for(lambda: rows(settings)["big.zip"]["upload_state"] == "uploaded", what="the upload")
        again = http.post(
            "/actions/approve",
            data={"file_id": file_id, "csrf": csrf_of(listing)},
            headers={"Accept": "application/json"},
        )
    assert again.json()["ok"] is False and "not held" in again.json()["message"]


def test_overview_limit_and_capture_preview_and_viewer_link(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator,
        tmp_path,
        web={"listen": "127.0.0.1:0"},
        upload={"bwlimit": "40M"},
        results={"dir": tmp_path / "results", "previews": True},
    )
    with Running(settings) as running, client(running) as http:
        make_zip(tmp_path / "inbox" / "yard.zip", images=2)
        wait_for(lambda: ready(running, "yard.zip"), what="READY and downloaded")
        with Journal(settings.journal.path) as journal:
            record = journal.by_path(str(tmp_path / "inbox" / "yard.zip"))
        assert record is not None
        wait_for(lambda: bool(running.daemon.journal.get(record.id).preview_paths), what="preview")
        overview = http.get("/").text
        page = http.get(f"/files/{record.id}").text
        preview = http.get(f"/files/{record.id}/preview")
        record = running.daemon.journal.get(record.id)
    assert "bandwidth limit now: 40M/s" in overview
    assert "Teleport&#39;s preview" in page or "Teleport's preview" in page
    assert preview.status_code == 200
    assert preview.content == Path(record.preview_paths[0]).read_bytes()
    assert record.viewer_url and f'href="{record.viewer_url}"' in page


def test_overview_shows_holds_keeps_warnings_and_wraps_names_at_separators(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator, tmp_path, web={"listen": "127.0.0.1:0"}, budget={"max_frames_per_capture": 2}
    )
    long_name = "site-b_north-facade_2026-12-04_drone-pass-03.zip"
    with Running(settings) as running, client(running) as http:
        # Each zip is written beside the inbox and renamed in, whole: written in place, a pause
        # longer than the settle time on a loaded machine let pre-flight read half a zip, and
        # the warning shown was its "could not read", not the one this test looks for.
        for name, images in (("big.zip", 3), (long_name, 2)):  # big.zip: over budget, held
            # Their "photos" are noise: uploaded with pre-flight's warning, which outlives the
            # upload.
            make_zip(tmp_path / name, images=images).rename(tmp_path / "inbox" / name)
        wait_for(lambda: rows(settings).get("big.zip", {}).get("phase") == "held", what="a hold")
        wait_for(lambda: ready(running, long_name), what="the other READY")
        overview = http.get("/").text
    attention = overview.split("<h2>Needs attention</h2>")[1].split("</section>")[0]
    assert "big.zip" in attention and 'data-action="approve"' in attention
    assert long_name not in attention
    [done_row] = [
        row for row in overview.split("<tr ") if f"{long_name}</a>" in row.replace("<wbr>", "")
    ]
    assert "phase-done" in done_row
    assert (
        '<div class="small preflight-warning">pre-flight warns: 2 images; at least 20' in done_row
    )
    assert (
        "site-<wbr>b_<wbr>north-<wbr>facade_<wbr>2026-<wbr>12-<wbr>04_<wbr>drone-<wbr>pass-"
        in done_row
    )


def test_throughput_is_a_rate_while_uploading_and_idle_after(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(
        emulator, tmp_path, web={"listen": "127.0.0.1:0"}, upload={"bwlimit": "2M"}
    )
    from .helpers import make_mp4

    def throughput(http: httpx.Client) -> str:
        found = re.search(r'id="throughput">([^<]*)<', http.get("/").text)
        assert found, "no throughput on the overview"
        return found.group(1)

    with Running(settings) as running, client(running) as http:
        make_mp4(tmp_path / "inbox" / "walk.mp4", 8 * MIB)  # ~4 s at 2 MiB/s
        progress = running.daemon.progress.live
        wait_for(
            lambda: 0 < progress.get(str(tmp_path / "inbox" / "walk.mp4"), [0, 1])[0] < 6 * MIB,
            what="the upload under way",
        )
        during = throughput(http)  # the first look at the page, mid-upload
        wait_for(lambda: rows(settings)["walk.mp4"]["upload_state"] == "uploaded", 30, "upload")
        wait_for(lambda: running.daemon.progress.rate.per_second() == 0, 15, "the window to pass")
        after = throughput(http)  # one look, long after the last byte
    assert during.endswith("MiB/s") or during.endswith("KiB/s"), during
    assert after == "idle"
