"""The web console in a real browser: Debian's headless Chromium, driven by selenium.

Skipped (not failed) where chromium or chromium-driver is not installed; `.ci/system-packages`
installs both. WebGL runs in software (SwiftShader), so the 3D view draws on any machine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.web.app import viewer_available

from .helpers import MIB, make_zip, set_knobs, wait_for
from .test_daemon import Running, rows, settings_for

webdriver = pytest.importorskip("selenium.webdriver")
By = pytest.importorskip("selenium.webdriver.common.by").By
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver"
)

# Pixels of a screenshot region that differ from the console's dark picture background.
COUNT_PAINTED = """
const [data, x, y, w, h, done] = arguments;
const img = new Image();
img.onload = () => {
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(x, y, w, h).data;
  let painted = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (Math.abs(px[i] - 22) + Math.abs(px[i + 1] - 24) + Math.abs(px[i + 2] - 29) > 40) painted++;
  }
  done(painted);
};
img.onerror = () => done(-1);
img.src = data;
"""


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=15, chunk_size=5 * MIB, processing_delay_seconds=0.5)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--window-size=1280,800",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Running]:
    settings = settings_for(
        emulator,
        tmp_path,
        web={"listen": "127.0.0.1:0"},
        # One part at a time, not widened: a pause then leaves parts unsent.
        upload={"concurrency": 1, "adaptive": False},
    )
    with Running(settings) as running:
        yield running


def browser_wait(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    found: list[Any] = []

    def check() -> bool:
        value = condition()
        found[:] = [value]
        return bool(value)

    wait_for(check, timeout, what)
    return found[0]


def painted_pixels(driver: Any, element_id: str) -> int:
    rect = driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)];",
        element_id,
    )
    shot = "data:image/png;base64," + driver.get_screenshot_as_base64()
    return int(driver.execute_async_script(COUNT_PAINTED, shot, *rect))


def finished_capture(console: Running, tmp_path: Path, name: str) -> int:
    make_zip(tmp_path / "inbox" / name, images=2)
    wait_for(
        lambda: bool(rows(console.daemon.settings).get(name, {}).get("result_paths")),
        what="the model on disk",
    )
    return next(r.id for r in console.daemon.journal.all_files() if r.path.endswith(name))


def test_progress_moves_during_an_upload(
    browser: Any, console: Running, emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, put_delay_seconds=0.5)  # 8 parts, one at a time: a few seconds
    browser.get(f"{console.daemon.web_url}files")
    assert "teleport-sync" in browser.title
    make_zip(tmp_path / "inbox" / "slow.zip", images=2, pad=38 * MIB)
    read = "const p = document.querySelector('progress'); return p ? p.value : null;"
    first = browser_wait(lambda: browser.execute_script(read), "a progress bar on the page")
    assert 0 < first < 100
    later = browser_wait(
        lambda: (v := browser.execute_script(read)) is not None and v > first and v,
        "the progress bar to move",
    )
    assert later > first
    # The upload finishes; the page says so without a reload.
    browser_wait(
        lambda: "processing" in browser.page_source or "done" in browser.page_source,
        "the row to leave the upload phases",
    )


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)])
def test_pages_fit_a_desktop_and_a_phone(
    browser: Any, console: Running, tmp_path: Path, size: tuple[int, int]
) -> None:
    file_id = finished_capture(console, tmp_path, "a-rather-long-capture-name-from-site-b.zip")
    browser.set_window_size(*size)
    for page in ("", "files", f"files/{file_id}"):
        browser.get(f"{console.daemon.web_url}{page}")
        assert "a-rather-long-capture-name-from-site-b.zip" in browser.page_source
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"/{page} scrolls sideways at {size}"


def test_thumbnail_is_not_blank(browser: Any, console: Running, tmp_path: Path) -> None:
    file_id = finished_capture(console, tmp_path, "thumb.zip")
    browser.get(f"{console.daemon.web_url}files/{file_id}/thumbnail.png")
    size = browser.execute_script(
        "const i = document.querySelector('img'); return [i.naturalWidth, i.naturalHeight]"
    )
    assert size == [320, 240]
    browser.execute_script("document.querySelector('img').id = 'thumb'")
    assert painted_pixels(browser, "thumb") > 0.1 * 320 * 240


@pytest.mark.skipif(not viewer_available(), reason="3D viewer files not fetched")
def test_3d_view_draws_the_model(
    browser: Any, console: Running, emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, processing_delay_seconds=3.0)
    make_zip(tmp_path / "inbox" / "splat.zip", images=2)
    wait_for(
        lambda: rows(console.daemon.settings).get("splat.zip", {}).get("phase") == "processing",
        what="the capture processing",
    )
    file_id = next(r.id for r in console.daemon.journal.all_files() if r.path.endswith("splat.zip"))
    # Opened while Teleport is still at work: the view appears when the model arrives.
    browser.get(f"{console.daemon.web_url}files/{file_id}")
    assert "The picture appears when the model is downloaded" in browser.page_source
    state = browser_wait(
        lambda: browser.execute_script(
            "const v = document.getElementById('viewer'); return v && v.dataset.state"
        ),
        "the 3D view to load when the model arrives",
    )
    assert state == "3d", state
    assert browser.execute_script("return !!document.querySelector('#viewer canvas')")
    painted = browser_wait(lambda: painted_pixels(browser, "viewer") > 2000, "splats on screen")
    assert painted


@pytest.mark.skipif(not viewer_available(), reason="3D viewer files not fetched")
def test_3d_view_draws_the_path_of_the_cameras_teleport_posed(
    browser: Any, console: Running, emulator: EmulatorServer, tmp_path: Path
) -> None:
    from .test_metadata_v2 import PHOTOS, real_photo_zip

    set_knobs(emulator, cameras_left_out=["IMG_0412.JPG"])
    real_photo_zip(tmp_path / "inbox" / "posed.zip", PHOTOS)
    wait_for(
        lambda: (rows(console.daemon.settings).get("posed.zip") or {}).get("teleport_posed"),
        what="the camera list read",
    )
    file_id = next(r.id for r in console.daemon.journal.all_files() if r.path.endswith("posed.zip"))
    browser.get(f"{console.daemon.web_url}files/{file_id}")
    assert "Teleport posed 15 of 16 photos; left out: IMG_0412" in browser.page_source
    state = browser_wait(
        lambda: browser.execute_script("return document.getElementById('viewer').dataset.state"),
        "the 3D view to load",
    )
    assert state == "3d", state
    drawn = browser.execute_script("return document.getElementById('viewer').dataset.cameraPath")
    assert drawn == "15", drawn  # one point per posed camera, joined by the path
    # The left-out photo's thumbnail is a real picture the browser decoded.
    width = browser.execute_script(
        "const i = document.querySelector('.teleport-posed img'); return i && i.naturalWidth"
    )
    assert width == 240


def test_the_pause_button_stops_new_puts(
    browser: Any, console: Running, emulator: EmulatorServer, tmp_path: Path
) -> None:
    set_knobs(emulator, put_delay_seconds=0.5)  # 12 parts, one at a time
    browser.get(console.daemon.web_url)
    make_zip(tmp_path / "inbox" / "long.zip", images=2, pad=58 * MIB)
    browser_wait(
        lambda: browser.execute_script("return !!document.querySelector('progress')"),
        "the upload on the overview",
    )
    browser.find_element(By.CSS_SELECTOR, "button[data-action=pause]").click()
    browser_wait(lambda: "paused all uploads" in browser.page_source, "the pause to be said")
    browser_wait(lambda: "badge phase-paused" in browser.page_source, "the file shown paused")
    # The part in flight when the pause came finishes; after that, nothing new starts. Without
    # the pause a PUT lands every ~0.5 s, so the count never holds still for 1.5 s.
    puts = lambda: emulator.stats.count("put")  # noqa: E731

    def still() -> int:
        before = puts()
        time.sleep(1.5)
        return before if puts() == before else 0

    settled = browser_wait(still, "part PUTs to stop")
    time.sleep(2.0)
    assert puts() == settled
    row = rows(console.daemon.settings)["long.zip"]
    assert row["parts_done"] < row["num_parts"]

    browser.find_element(By.CSS_SELECTOR, "button[data-action=resume]").click()
    wait_for(
        lambda: rows(console.daemon.settings)["long.zip"]["upload_state"] == "uploaded",
        what="the upload to finish after resuming",
    )
    eid = str(rows(console.daemon.settings)["long.zip"]["eid"])
    assert set(emulator.stats.successful_puts(eid).values()) == {1}  # each part sent once
