"""The two pages in Debian's Chromium (headless), driven by Playwright."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, CLASS_COLOURS
from tests.serve.client import running_server
from ursa.serve import Predictor
from ursa.serve.bench import ServerProcess

pytestmark = pytest.mark.browser


def write_y4m(path: Path, rgb: tuple[int, int, int], frames: int = 30) -> Path:
    """A 320×240 YUV4MPEG2 clip of a noisy ``rgb`` colour, for Chromium's fake camera."""
    width, height = 320, 240
    rng = np.random.default_rng(0)
    with path.open("wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (height, width, 3)), 0, 255)
            r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b  # BT.601, full range (C420jpeg)
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            planes = [y] + [
                c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for c in (u, v)
            ]
            stream.write(b"FRAME\n")
            for plane in planes:
                stream.write(np.clip(plane + 0.5, 0, 255).astype(np.uint8).tobytes())
    return path


def assert_not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, "the screenshot is (nearly) one flat colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def console_errors(page: Any) -> list[str]:
    """Errors the page logs from now on; a Content-Security-Policy refusal is one."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.fixture(scope="module")
def server(tiny_served: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with running_server(tiny_served[0]) as process:
        yield process


def test_upload_page_shows_the_top_class(
    playwright: Any, server: ServerProcess, tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    predictor = Predictor(tiny_served[0])
    image = next(
        p for p in sorted((tiny_served[1] / "green").glob("*.png"))
        if predictor.predict(p).label == "green"
    )  # fmt: skip
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        errors = console_errors(page)
        page.goto(f"http://127.0.0.1:{server.port}/")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#result:not([hidden])", timeout=15_000)
        assert page.inner_text("#top-label").startswith("green")
        bars = page.locator("#bars li")
        assert bars.count() == 3
        assert bars.first.locator(".label").inner_text() == "green"
        width = bars.first.locator(".fill").evaluate("e => e.getBoundingClientRect().width")
        assert width > 0
        assert "server" in page.inner_text("#timing")
        assert_not_blank(page.screenshot(path=str(tmp_path / "upload.png")))
        assert not errors, errors
    finally:
        browser.close()


def test_live_page_charts_the_fake_camera(
    playwright: Any, server: ServerProcess, tmp_path: Path
) -> None:
    clip = write_y4m(tmp_path / "red.y4m", CLASS_COLOURS["red"])
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )
    try:
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        errors = console_errors(page)
        page.goto(f"http://127.0.0.1:{server.port}/live")
        page.wait_for_selector("#legend li", timeout=15_000)
        page.click("#toggle")
        # Enough frames that the lines span a good part of the chart: with only a few,
        # the mostly white chart can fall under the flat-screenshot threshold below.
        # Polled from here: wait_for_function evaluates a string, which the page's
        # Content-Security-Policy (no 'unsafe-eval') rightly refuses.
        deadline = time.monotonic() + 60
        while int(page.inner_text("#frames")) < 40:
            assert time.monotonic() < deadline, "fewer than 40 frames in 60 s"
            page.wait_for_timeout(200)
        p50 = page.inner_text("#p50")
        assert p50.endswith(" ms") and float(p50.split()[0]) > 0
        assert float(page.inner_text("#p99").split()[0]) >= float(p50.split()[0])
        current = page.locator("#legend li.current")
        assert current.count() == 1
        assert page.inner_text("#current").startswith(f"now: {current.inner_text().strip()}")
        # The chart has coloured lines, not only its white background and grey grid.
        coloured = page.evaluate(
            """() => {
                const c = document.getElementById('chart');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) {
                    const spread = Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
                    if (spread > 60) n++;
                }
                return n;
            }"""
        )
        assert coloured > 200
        assert_not_blank(page.locator("#chart").screenshot(path=str(tmp_path / "chart.png")))
        assert_not_blank(page.screenshot(path=str(tmp_path / "live.png")))
        assert not errors, errors
    finally:
        browser.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_page_lists_every_operation_from_this_server_only(
    playwright: Any, server: ServerProcess, path: str
) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        errors = console_errors(page)
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(origin + path)
        page.wait_for_selector("#operations .operation", timeout=15_000)
        text = page.inner_text("#operations")
        for operation in ("POST /predict", "POST /predict/batch", "GET /metadata", "GET /metrics"):
            assert operation in text
        assert "413" in text and "PredictionOut" in text
        assert page.inner_text("#status") == f"{page.locator('.operation').count()} operations"
        assert fetched and all(url.startswith(origin + "/") for url in fetched), fetched
        assert not errors, errors
    finally:
        browser.close()
