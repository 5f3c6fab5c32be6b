"""The exported site's upload page has ursa serve's states: empty (a hint, no image), a
prediction (preview and bars), a bad file (its error as text, nothing of the last file left).
Debian's Chromium (headless, Playwright) on the site served from loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from ursa import UrsaError
from ursa.export.web import export_web, find_runtime, serve_site

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # slow: a trained bundle in the site

#: Visible <img> elements that show no picture: no src, not loaded, or undecodable.
BROKEN_IMAGES = """() => [...document.images]
  .filter((img) => img.checkVisibility())
  .filter((img) => !img.getAttribute("src") || !img.complete || img.naturalWidth === 0)
  .map((img) => img.id || img.outerHTML)"""


@pytest.fixture(scope="module")
def site_url(
    tiny_served: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    try:
        find_runtime()
    except UrsaError as error:
        pytest.skip(str(error))
    site = export_web(tiny_served[0], tmp_path_factory.mktemp("web") / "site").site
    with serve_site(site) as url:
        yield url


@pytest.fixture
def page(playwright: Any, site_url: str) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        opened = browser.new_page()
        opened.goto(site_url + "/")
        opened.evaluate("ursaModel.ready")
        yield opened
    finally:
        browser.close()


def test_the_site_upload_page_states(
    page: Any, tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    assert page.evaluate(BROKEN_IMAGES) == []
    assert page.locator("img:visible").count() == 0
    assert page.locator("#result").is_hidden()
    assert page.inner_text("#status").startswith("No image yet")

    good = sorted((tiny_served[1] / "green").glob("*.png"))[0]
    page.set_input_files("#file", str(good))
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    assert page.locator("#preview").evaluate("img => img.naturalWidth") == Image.open(good).width
    assert page.locator("#bars li").count() == 3
    assert page.evaluate(BROKEN_IMAGES) == []

    name = "<b>notes</b> <img src=x>.jpg"
    page.set_input_files(
        "#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": b"not an image\n"}]
    )
    page.wait_for_selector("#status.error", timeout=15_000)
    status = page.locator("#status")
    assert status.inner_text().startswith(f"{name}: "), status.inner_text()
    assert "not an image this page can read" in status.inner_text()
    assert status.locator("*").count() == 0, "the error was inserted as HTML"
    assert page.locator("#result").is_hidden()
    assert page.locator("#bars li").count() == 0, "the last file's bars stay after an error"
    assert page.inner_text("#top-label") == ""
    assert page.locator("#preview").get_attribute("src") is None
    assert page.evaluate(BROKEN_IMAGES) == []
