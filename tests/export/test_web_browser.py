"""The exported site in Debian's Chromium (headless, Playwright), served by Python's
http.server on loopback: the model runs in the page and agrees with ``ursa predict``."""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import pytest
from PIL import Image

import ursa
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, CLASS_COLOURS
from ursa.core.bundle import read_bundle, write_bundle
from ursa.core.errors import UrsaError
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.core.runtime import Predictor
from ursa.export.web import export_web, find_runtime, serve_site
from ursa.serve.bench import synthetic_jpeg

pytestmark = pytest.mark.browser

PREDICT = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return await ursaModel.predict(new Blob([bytes]));
}"""
TENSOR = """async ([b64, config]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const { picture } = await ursaPreprocess.decodeFile(new Blob([bytes]), config);
  const raw = new Uint8Array(ursaPreprocess.tensor(picture, config).buffer);
  let text = "";
  for (let i = 0; i < raw.length; i += 8192) {
    text += String.fromCharCode(...raw.subarray(i, i + 8192));
  }
  return btoa(text);
}"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runtime_present() -> None:
    try:
        find_runtime()
    except UrsaError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def sites(
    tiny_served: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, runtime_present: None
) -> dict[str, Path]:
    """The tiny bundle exported twice: fp32 (what `ursa predict` runs) and auto (int8)."""
    root = tmp_path_factory.mktemp("web")
    return {
        precision: export_web(tiny_served[0], root / precision, precision=precision).site
        for precision in ("fp32", "auto")
    }


@pytest.fixture(scope="module")
def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    clip = write_y4m(tmp_path_factory.mktemp("camera") / "red.y4m", CLASS_COLOURS["red"])
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )
    yield launched
    launched.close()


class Visit:
    """One page in a fresh browser context, with every request and console message kept."""

    def __init__(self, browser: Any, url: str, path: str = "/") -> None:
        self.context = browser.new_context(permissions=["camera"])
        self.requests: list[str] = []
        self.console: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))
        self.page.goto(url + path)
        self.info: dict[str, Any] = self.page.evaluate("ursaModel.ready")

    def predict(self, data: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = self.page.evaluate(PREDICT, b64(data))
        return answer

    def close(self) -> None:
        self.context.close()


def write_y4m(path: Path, rgb: tuple[int, int, int], frames: int = 30) -> Path:
    """A 320×240 YUV4MPEG2 clip of a noisy colour, for Chromium's fake camera."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = 320, 240
    rng = np.random.default_rng(0)
    with path.open("wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (height, width, 3)), 0, 255)
            r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            chroma = [c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for c in (u, v)]
            stream.write(b"FRAME\n")
            for plane in (y, *chroma):
                stream.write(np.clip(plane + 0.5, 0, 255).astype(np.uint8).tobytes())
    return path


def validation_images(bundle: Path, folder: Path) -> list[Path]:
    """The bundle's validation split, rebuilt from its recorded settings."""
    from ursa.data.core import ImageData

    config = read_bundle(bundle).config
    data = ImageData.from_spec(config.training.get("data"), folder, **config.data_settings())
    return [item.path for item in data.valid_items]


def assert_same_origin(requests: list[str], url: str) -> None:
    outside = [r for r in requests if not r.startswith((url + "/", "blob:", "data:"))]
    assert not outside, f"requests left the origin: {outside}"


def test_the_site_agrees_with_ursa_predict_and_never_leaves_its_origin(
    browser: Any, sites: dict[str, Path], tiny_served: tuple[Path, Path]
) -> None:
    bundle, folder = tiny_served
    images = validation_images(bundle, folder)[:20]
    assert len(images) == 20
    reference = ursa.load(bundle)  # what `ursa predict` runs: model.onnx on ONNX Runtime
    with serve_site(sites["fp32"]) as url:
        visit = Visit(browser, url)
        try:
            assert visit.info["model"] == "model.onnx" and visit.info["threads"] == 1
            assert visit.info["cross_origin_isolated"] is False
            agree, worst = 0, 0.0
            for path in images:
                answer = visit.predict(path.read_bytes())
                expected = reference.predict(path)
                agree += answer["label"] == expected.label
                assert set(answer["probabilities"]) == set(expected.probabilities)
                for name, p in expected.probabilities.items():
                    worst = max(worst, abs(answer["probabilities"][name] - p))
                assert answer["probability"] == answer["probabilities"][answer["label"]]
                assert answer["top"][0]["label"] == answer["label"]
                assert answer["browser_ms"] > 0
            assert agree >= 19, f"top-1 agrees on {agree}/20"
            assert worst <= 0.05, f"probabilities differ by up to {worst:.4f}"
            runtime = visit.page.locator("#runtime")
            assert "1 thread (not cross-origin isolated" in runtime.inner_text()
            assert_same_origin(visit.requests, url)
            assert any(r.endswith("/model/model.onnx") for r in visit.requests)
            assert not [m for m in visit.console if "Content Security Policy" in m]
        finally:
            visit.close()


def test_int8_runs_threaded_when_the_host_isolates_the_page(
    browser: Any, sites: dict[str, Path], tiny_served: tuple[Path, Path]
) -> None:
    bundle, folder = tiny_served
    reference = Predictor(bundle, int8=True)
    # JPEGs of 320 px, so that the reduced-scale decode is exercised (1/8 for a 32 px model).
    photos = [
        encoded(Image.open(path).convert("RGB").resize((320, 320)), "JPEG", quality=90)
        for path in validation_images(bundle, folder)[:8]
    ]
    with serve_site(sites["auto"], isolated=True) as url:
        visit = Visit(browser, url)
        try:
            assert visit.info["model"] == "model.int8.onnx" and visit.info["precision"] == "int8"
            assert visit.info["cross_origin_isolated"] is True
            cores = visit.page.evaluate("navigator.hardwareConcurrency")
            assert visit.info["threads"] == min(4, cores)
            if cores > 1:
                assert "threads (cross-origin isolated)" in visit.page.inner_text("#runtime")
            agree = 0
            for data in photos:
                answer, expected = visit.predict(data), reference.predict(data)
                agree += answer["label"] == expected.label
                worst = max(
                    abs(answer["probabilities"][n] - p) for n, p in expected.probabilities.items()
                )
                assert worst <= 0.05
            assert agree >= 7
            assert_same_origin(visit.requests, url)
        finally:
            visit.close()


IMAGE_CASES: dict[str, bytes] = {}


def parity_images() -> dict[str, bytes]:
    """Photos and edge cases: PNG, RGBA, palette GIF, a thin strip, JPEGs (turned by EXIF,
    grayscale, the 640×480 benchmark image)."""
    if IMAGE_CASES:
        return IMAGE_CASES
    skimage_data = pytest.importorskip("skimage.data")
    chelsea = Image.fromarray(skimage_data.chelsea())  # 451×300
    coffee = Image.fromarray(skimage_data.coffee())  # 600×400
    rgba = np.asarray(chelsea.convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, rgba.shape[1], dtype=np.uint8)[None, :]
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise
    IMAGE_CASES.update({
        "photo.png": encoded(coffee, "PNG"),
        "transparent.png": encoded(Image.fromarray(rgba, "RGBA"), "PNG"),
        "palette.gif": encoded(chelsea.quantize(64), "GIF"),
        "strip.png": encoded(coffee.resize((300, 20)), "PNG"),
        "photo.jpg": encoded(chelsea, "JPEG", quality=90),
        "turned.jpg": encoded(coffee, "JPEG", quality=90, exif=exif.tobytes()),
        "gray.jpg": encoded(chelsea.convert("L"), "JPEG", quality=90),
        "bench.jpg": synthetic_jpeg(),
    })  # fmt: skip
    return IMAGE_CASES


@pytest.mark.slow
def test_the_browser_tensor_matches_prepare_input(browser: Any, sites: dict[str, Path]) -> None:
    """Every resize method, pad mode and interpolation at 32 and 224 px."""
    configs = [
        PreprocessConfig(size=size, resize=resize, pad_mode=pad, interpolation=interpolation)
        for size, (resize, pad), interpolation in itertools.product(
            (32, 224),
            (("crop", "zeros"), ("squish", "zeros"), ("pad", "zeros"), ("pad", "border"),
             ("pad", "reflection")),
            ("bicubic", "bilinear", "nearest"),
        )
    ]  # fmt: skip
    report = []
    with serve_site(sites["fp32"]) as url:
        visit = Visit(browser, url)
        try:
            for (name, data), config in itertools.product(parity_images().items(), configs):
                expected = prepare_input(data, config)
                settings = {**config.to_dict(), "pillow": PIL.__version__}
                raw = base64.b64decode(visit.page.evaluate(TENSOR, [b64(data), settings]))
                got = np.frombuffer(raw, np.float32)
                difference = np.abs(got.reshape(expected.shape) - expected)
                levels = difference * np.asarray(config.std, np.float32)[:, None, None] * 255
                reduced = (name.endswith(".jpg") and config.size == 32) or name == "bench.jpg"
                report.append(
                    (name, config.size, float(difference.max()), float(levels.mean()), reduced)
                )
                if not reduced:
                    # Decoded and resized as Pillow does, bit for bit.
                    assert difference.max() <= 1e-6, (name, config)
                else:
                    # Reduced-scale JPEG decoding is emulated (block means): a few levels.
                    assert levels.max() <= 16 and levels.mean() <= 1.5, (name, config)
        finally:
            visit.close()
    for kind, rows in (
        ("exact path", [r for r in report if not r[4]]),
        ("reduced-scale JPEG", [r for r in report if r[4]]),
    ):
        worst = max(rows, key=lambda row: row[2])
        print(
            f"\n{kind}: max |browser - python| {worst[2]:.4f} ({worst[0]}, {worst[1]} px); "
            f"mean difference {np.mean([r[3] for r in rows]):.3f} levels of 255"
        )


def test_bad_input_gets_a_message_and_the_page_keeps_working(
    browser: Any, sites: dict[str, Path], tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    good = sorted((tiny_served[1] / "green").glob("*.png"))[0]
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    photo = encoded(Image.new("RGB", (64, 48), (200, 30, 30)), "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo[: len(photo) // 2])
    huge = tmp_path / "huge.png"  # 60 megapixels, one bit each: a small file
    Image.new("1", (10_000, 6_000)).save(huge)
    expected = {
        text: "not an image this page can read",
        empty: "empty",
        truncated: "truncated",
        huge: "60,000,000 pixels, over this page's limit",
    }
    with serve_site(sites["auto"]) as url:
        visit = Visit(browser, url)
        try:
            page = visit.page
            for path, message in expected.items():
                page.set_input_files("#file", str(path))
                page.wait_for_selector("#status.error", timeout=10_000)
                status = page.inner_text("#status")
                assert status.startswith(path.name) and message in status, status
                assert page.locator("#result").is_hidden()
                page.set_input_files("#file", str(good))  # the page still works
                page.wait_for_selector("#result:not([hidden])", timeout=10_000)
                assert page.inner_text("#top-label").startswith("green")
            with pytest.raises(Exception, match="predict takes a Blob"):
                page.evaluate("ursaModel.predict(42)")
        finally:
            visit.close()


def test_class_names_are_shown_as_text(
    browser: Any, tiny_served: tuple[Path, Path], tmp_path: Path, runtime_present: None
) -> None:
    bundle = read_bundle(tiny_served[0])
    names = ["<img src=x onerror=alert(1)>", "green & <b>co", "red"]
    config = type(bundle.config)(**{**bundle.config.__dict__, "class_names": names})
    members = {n: bundle.read(n) for n in bundle.members if n.endswith(".onnx")}
    renamed = write_bundle(
        tmp_path / "renamed.ursa", config, bundle.read("model.safetensors"), bundle.metrics, members
    )
    site = export_web(renamed, tmp_path / "site").site
    image = sorted((tiny_served[1] / "blue").glob("*.png"))[0]
    with serve_site(site) as url:
        visit = Visit(browser, url)
        try:
            visit.page.set_input_files("#file", str(image))
            visit.page.wait_for_selector("#result:not([hidden])", timeout=10_000)
            labels = visit.page.locator("#bars .label").all_inner_texts()
            assert sorted(labels) == sorted(names)
            assert visit.page.locator("#bars img, #bars b, #top-label img").count() == 0
        finally:
            visit.close()


def test_the_live_page_runs_on_the_fake_camera_and_draws_its_chart(
    browser: Any, sites: dict[str, Path]
) -> None:
    with serve_site(sites["auto"]) as url:
        visit = Visit(browser, url, "/live.html")
        try:
            page = visit.page
            page.wait_for_selector("#legend li", timeout=15_000)
            page.click("#toggle")
            page.wait_for_function(
                "() => Number(document.getElementById('frames').textContent) >= 40", timeout=60_000
            )
            p50 = page.inner_text("#p50")
            assert p50.endswith(" ms") and float(p50.split()[0]) > 0
            assert float(page.inner_text("#p99").split()[0]) >= float(p50.split()[0])
            assert float(page.inner_text("#fps")) > 0
            current = page.locator("#legend li.current")
            assert current.count() == 1
            assert current.inner_text().strip() == "red"  # the fake camera films red noise
            assert page.inner_text("#current").startswith(f"now: {current.inner_text().strip()}")
            coloured = page.evaluate(
                """() => {
                    const c = document.getElementById('chart');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0;
                    for (let i = 0; i < d.length; i += 4) {
                        const hi = Math.max(d[i], d[i+1], d[i+2]);
                        const spread = hi - Math.min(d[i], d[i+1], d[i+2]);
                        if (spread > 60) n++;
                    }
                    return n;
                }"""
            )
            assert coloured > 500, "the chart has no coloured lines"
            page.click("#toggle")
            page.wait_for_function(
                "() => document.getElementById('status').textContent === 'stopped'"
            )
            assert_same_origin(visit.requests, url)
        finally:
            visit.close()
