"""The upload page's states (empty, a prediction, a bad upload) and /docs with no other
origin reachable, in Debian's Chromium (headless, Playwright) against a real ``ursa serve``:
each state is checked in the DOM and saved as a screenshot under the test's tmp_path."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.serve.client import request, running_server
from ursa.serve import Predictor
from ursa.serve.bench import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # slow: a trained bundle behind the server

#: Visible <img> elements that show no picture: no src, not loaded, or undecodable.
BROKEN_IMAGES = """() => [...document.images]
  .filter((img) => img.checkVisibility())
  .filter((img) => !img.getAttribute("src") || !img.complete || img.naturalWidth === 0)
  .map((img) => img.id || img.outerHTML)"""


class Visit:
    """A fresh browser context that can reach the server's origin only: every request is
    kept, and any to another origin is refused (as if offline) and listed in ``outside``."""

    def __init__(self, browser: Any, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1000, "height": 700})
        self.context.route("**/*", self._only_the_origin)
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _only_the_origin(self, route: Any) -> None:
        if route.request.url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort("internetdisconnected")

    def open(self, path: str) -> Any:
        self.page.goto(self.origin + path)
        # The model line is filled from /metadata once upload.js has run.
        self.page.wait_for_function(
            "() => document.getElementById('model').textContent.includes('classes')",
            timeout=15_000,
        )
        return self.page

    def broken_images(self) -> list[str]:
        found: list[str] = self.page.evaluate(BROKEN_IMAGES)
        return found

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        assert_png_with_content(path)
        return path

    def assert_stayed_home(self, console: tuple[str, ...] = ()) -> None:
        """No request left the origin; the console shows no error but ``console``."""
        assert self.requests, "the page made no request"
        assert not self.outside, f"requests left the origin: {self.outside}"
        assert all(url.startswith(self.origin + "/") for url in self.requests), self.requests
        assert self.errors == list(console), self.errors


def assert_png_with_content(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path.name} is not a PNG"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 600, pixels.shape
    assert pixels.std() > 5, f"{path.name} is (nearly) one flat colour"


@pytest.fixture(scope="module")
def server(tiny_served: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with running_server(tiny_served[0]) as process:
        yield process


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def visit(browser: Any, server: ServerProcess) -> Iterator[Visit]:
    current = Visit(browser, f"http://127.0.0.1:{server.port}")
    yield current
    current.context.close()


@pytest.fixture(scope="module")
def green_image(tiny_served: tuple[Path, Path]) -> Path:
    """A green training image the model calls green."""
    predictor = Predictor(tiny_served[0])
    return next(
        path for path in sorted((tiny_served[1] / "green").glob("*.png"))
        if predictor.predict(path).label == "green"
    )  # fmt: skip


def test_the_empty_page_shows_a_hint_and_no_image(visit: Visit, tmp_path: Path) -> None:
    page = visit.open("/")
    assert visit.broken_images() == []
    assert page.locator("img:visible").count() == 0
    assert page.locator("#result").is_hidden()
    hint = page.locator("#status")
    assert hint.is_visible() and hint.inner_text().startswith("No image yet"), hint.inner_text()
    visit.screenshot(tmp_path / "upload-empty.png")
    visit.assert_stayed_home()


def test_a_prediction_shows_the_preview_beside_the_bars(
    visit: Visit, green_image: Path, tmp_path: Path
) -> None:
    page = visit.open("/")
    page.set_input_files("#file", str(green_image))
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    preview = page.locator("#preview")
    assert preview.is_visible()
    assert preview.evaluate("img => img.naturalWidth") == Image.open(green_image).width
    assert page.inner_text("#top-label").startswith("green (")
    assert page.locator("#bars li").count() == 3
    assert page.locator("#bars li").first.locator(".label").inner_text() == "green"
    assert "server" in page.inner_text("#timing")
    assert page.inner_text("#status") == green_image.name
    assert visit.broken_images() == []
    visit.screenshot(tmp_path / "upload-prediction.png")

    # The server reads TIFF, which Chromium cannot draw: the bars and a note, no broken box.
    tiff = tmp_path / "green.tif"
    Image.open(green_image).save(tiff, format="TIFF")
    page.set_input_files("#file", str(tiff))
    page.wait_for_function(
        "() => document.getElementById('status').textContent === 'green.tif'", timeout=15_000
    )
    assert page.locator("#result").is_visible()
    assert page.inner_text("#top-label").startswith("green (")
    assert page.locator("#bars li").count() == 3
    assert visit.broken_images() == []
    assert page.locator("#preview").is_hidden()
    note = page.locator("#no-preview")
    assert note.is_visible() and "green.tif" in note.inner_text()
    visit.screenshot(tmp_path / "upload-no-preview.png")
    visit.assert_stayed_home()


def test_a_bad_upload_clears_the_last_prediction_and_shows_the_error_as_text(
    visit: Visit, server: ServerProcess, green_image: Path, tmp_path: Path
) -> None:
    bad = b"not an image\n"
    code, answer = request(server.port, "POST", "/predict", bad, "image/jpeg")
    assert code == 400
    page = visit.open("/")
    page.set_input_files("#file", str(green_image))
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    assert page.locator("#bars li").count() == 3

    # Hold the next /predict on its way to the server, to look at the page while it waits.
    held: list[Any] = []
    page.route("**/predict", lambda route: held.append(route))
    name = "<b>notes</b> <img src=x>.jpg"
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": bad}])
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the page sent no /predict"
        page.wait_for_timeout(50)
    assert page.inner_text("#status") == f"classifying {name} …"
    assert page.locator("#bars li").count() == 0, "the last file's bars stay while classifying"
    assert page.locator("#result").is_hidden()
    assert visit.broken_images() == []
    held[0].continue_()  # on to the real server
    page.unroute("**/predict")

    page.wait_for_selector("#status.error", timeout=15_000)
    status = page.locator("#status")
    assert status.inner_text() == f"{name}: {answer['detail']}"
    assert status.locator("*").count() == 0, "the error was inserted as HTML"
    assert page.locator("#result").is_hidden()
    assert page.locator("#bars li").count() == 0
    assert page.inner_text("#top-label") == ""
    assert page.locator("#preview").get_attribute("src") is None
    assert page.locator("img:visible").count() == 0
    assert visit.broken_images() == []
    visit.screenshot(tmp_path / "upload-bad.png")

    page.set_input_files("#file", str(green_image))  # the page still works
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    assert page.inner_text("#top-label").startswith("green (")
    assert page.locator("#status").get_attribute("class") == "muted"
    # Chromium logs every 4xx answer; the page itself logs nothing.
    visit.assert_stayed_home(
        console=(
            "Failed to load resource: the server responded with a status of 400 (Bad Request)",
        )
    )


def test_the_api_link_opens_docs_that_work_offline(visit: Visit, tmp_path: Path) -> None:
    page = visit.open("/")
    page.click("header nav a:text-is('API')")
    page.wait_for_selector("#operations .operation", timeout=15_000)
    assert page.url == f"{visit.origin}/docs"
    text = page.inner_text("#operations")
    for operation in (
        "POST /predict",
        "POST /predict/batch",
        "GET /metadata",
        "GET /healthz",
        "GET /metrics",
    ):
        assert operation in text
    count = page.locator("#operations .operation").count()
    assert page.inner_text("#status") == f"{count} operations"
    assert page.inner_text("#title").endswith(" API")
    visit.screenshot(tmp_path / "docs.png")
    visit.assert_stayed_home()
