"""report.html in headless Chromium: no request leaves the page, every section shows."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.interpret.report import SECTIONS
from ursa.train import Learner, SilentLogger

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A report of a briefly trained tiny model (what it learned does not matter here)."""
    root = make_class_folder(tmp_path / "colours", per_class=6)
    data = ImageData.from_folder(root, size=32, batch_size=8, num_workers=0, valid_pct=0.34)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fit_one_cycle(1, 1e-2)
    return learner.interpret().report(tmp_path / "out" / "report.html", k=4)


def test_report_opens_offline_and_shows_every_section(report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    requests: list[str] = []
    failed: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("console", lambda message: failed.append(f"console: {message.text}"))
            page.goto(report.as_uri(), wait_until="load")
            for key, title in SECTIONS:
                heading = page.locator(f"section#{key} > h2")
                assert heading.inner_text() == title
                heading.scroll_into_view_if_needed()
                assert heading.is_visible()
            images = page.locator("img")
            assert images.count() == 5
            for index in range(images.count()):  # every figure decoded, none broken
                assert images.nth(index).evaluate("img => img.complete && img.naturalWidth > 100")
            page.evaluate("window.scrollTo(0, 0)")
            screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert failed == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    pixels = np.asarray(Image.open(io.BytesIO(screenshot)).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 2000  # the whole card, not one screen
    assert pixels.std() > 20  # text and figures, not a blank page
    assert (pixels < 128).mean() > 0.01
