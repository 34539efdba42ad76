"""Bounded downloads (issue 37): a body never runs past what was promised, nor fills the disk.

The hostile server is a small proxy (`tests/hostile.py`) in front of the emulator on
127.0.0.1: everything is the emulator's until the proxy serves a model body that never ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from teleport_sync.api import (
    BodyTooLong,
    DownloadBounds,
    NotEnoughSpace,
    TeleportClient,
    build_client,
)
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.results import ModelOptions, fetch_models, plan_models
from teleport_sync.retry import RetryPolicy

from .helpers import MIB, make_zip, wait_for
from .hostile import HostileProxy
from .test_api import upload_bytes, zip_of_images
from .test_daemon import Running, rows, settings_for

MODELS = "/_emulator/models/"


@pytest.fixture
def proxy(emulator: EmulatorServer) -> Iterator[HostileProxy]:
    with HostileProxy(emulator.url) as server:
        yield server


def client_via(proxy: HostileProxy, emulator: EmulatorServer, **bounds: object) -> TeleportClient:
    return build_client(
        base_url=proxy.url,
        auth_url=proxy.token_url,
        client_id=emulator.config.client_id,
        client_secret=emulator.config.client_secret,
        policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        download_bounds=DownloadBounds(**bounds),  # type: ignore[arg-type]
    )


def ready_sid(emulator: EmulatorServer, client: TeleportClient) -> str:
    emulator.backend.monotonic = time.monotonic
    eid = upload_bytes(client, "scan.zip", zip_of_images(), "bulk-images")
    emulator.backend.monotonic = lambda: time.monotonic() + 10**6  # processing is done
    capture = client.find_capture(eid)
    assert capture is not None and capture.state == "READY" and capture.sid
    return capture.sid


def test_an_endless_model_body_stops_at_the_promised_size_and_names_the_host(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    with client_via(proxy, emulator) as client:
        sid = ready_sid(emulator, client)
        plan = plan_models(client, sid, ["ply"], tmp_path / "out", ModelOptions())
        [item] = plan.files
        promised = item.model.size
        assert promised and MODELS in item.model.url  # the link leads through the proxy
        proxy.endless.add(MODELS)
        with pytest.raises(BodyTooLong) as caught:
            fetch_models(client, plan)
    message = str(caught.value)
    assert "127.0.0.1" in message and f"the {promised} bytes its metadata promised" in message
    # Nothing kept of a misbehaving body: no model, no .part to resume from.
    assert list((tmp_path / "out").rglob("*.ply*")) == []
    # The server was cut off, not read to the end of a disk: what it managed to push is what
    # the kernel's socket buffers took before the client hung up.
    [(path, sent)] = proxy.sent.items()
    assert MODELS in path and sent < 32 * MIB


def test_a_content_length_beyond_the_promise_is_refused_before_reading(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    with client_via(proxy, emulator) as client:
        sid = ready_sid(emulator, client)
        plan = plan_models(client, sid, ["ply"], tmp_path / "out", ModelOptions())
        proxy.endless.add(MODELS)
        proxy.endless_length = 1 << 40
        with pytest.raises(BodyTooLong, match=r"127\.0\.0\.1 announced 1099511627776 bytes"):
            fetch_models(client, plan)
    assert list((tmp_path / "out").rglob("*.ply*")) == []


def test_without_a_size_the_configured_cap_bounds_the_body(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    proxy.endless.add("/anything.png")
    with (
        client_via(proxy, emulator, cap_bytes=2 * MIB) as client,
        pytest.raises(BodyTooLong, match="max_download_mib"),
    ):
        client.download(f"{proxy.url}/anything.png", tmp_path / "preview.png")
    assert list(tmp_path.iterdir()) == []


def test_free_space_is_checked_before_any_byte_is_asked_for(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    with client_via(proxy, emulator) as client:
        sid = ready_sid(emulator, client)
        plan = plan_models(client, sid, ["ply"], tmp_path / "out", ModelOptions())
        client.download_bounds = replace(client.download_bounds, free_space=lambda folder: MIB)
        with pytest.raises(NotEnoughSpace, match=r"kept free .*min_free_mib") as caught:
            fetch_models(client, plan)
    assert str(tmp_path / "out" / "ply") in str(caught.value)
    assert not [p for _, p in proxy.requests if MODELS in p]  # nothing was downloaded


def test_a_disk_that_fills_during_the_download_stops_it_and_keeps_the_part(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    answers = iter([10 * 1024 * MIB])  # free before it starts; then the disk is full

    def free_space(folder: Path) -> int:
        return next(answers, 0)

    with client_via(proxy, emulator, check_every_bytes=1024, free_space=free_space) as client:
        sid = ready_sid(emulator, client)
        plan = plan_models(client, sid, ["ply"], tmp_path / "out", ModelOptions())
        with pytest.raises(NotEnoughSpace):
            fetch_models(client, plan)
    # No model; its .part stays to be resumed once there is room again.
    assert not plan.files[0].target.exists()
    [part] = (tmp_path / "out").rglob("model.ply.part")
    assert part.stat().st_size < plan.files[0].model.size


def test_the_daemon_records_the_refusal_and_keeps_running(
    emulator: EmulatorServer, proxy: HostileProxy, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    settings.api.base_url = proxy.url
    settings.api.auth_url = proxy.token_url
    proxy.endless.add(MODELS)
    with Running(settings):
        make_zip(settings.watch.paths[0] / "scan.zip", images=3)
        wait_for(lambda: rows(settings).get("scan.zip", {}).get("result_error"), 60, "refused")
        row = rows(settings)["scan.zip"]
    assert row["phase"] == "downloading"
    assert "127.0.0.1 sent more than the" in str(row["result_error"])
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
