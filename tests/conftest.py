"""Shared fixtures: tiny image folders made in tmp_path, and a tiny timm model."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

#: timm's smallest EfficientNet, random weights: the whole path in seconds on a CPU.
TINY_ARCH = "test_efficientnet"

CLASS_COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}


def colour_image(
    colour: tuple[int, int, int], rng: np.random.Generator, size: int = 40
) -> Image.Image:
    """A noisy image dominated by ``colour``: easy for any model to tell apart by class."""
    base = np.array(colour, dtype=np.float32)
    noise = rng.normal(0, 25, size=(size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def make_class_folder(root: Path, per_class: int = 12, *, seed: int = 0, fmt: str = "PNG") -> Path:
    """``root/<colour>/NN.png`` for each of three colours."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASS_COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            suffix = "jpg" if fmt == "JPEG" else "png"
            colour_image(colour, rng).save(folder / f"{index:02d}.{suffix}", format=fmt)
    return root


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def decode_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's decode cache in a folder of its own, never the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("ursa-cache")
    monkeypatch.setenv("URSA_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def colour_folder(tmp_path: Path) -> Path:
    """Three colour classes × 12 small PNG images."""
    return make_class_folder(tmp_path / "colours")


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Three classes × 20 JPEGs, plus a truncated JPEG, a 0-byte file and a text file as .jpg."""
    root = make_class_folder(tmp_path / "messy", per_class=20, fmt="JPEG")
    rng = np.random.default_rng(1)
    good = jpeg_bytes(colour_image((220, 40, 40), rng, size=64))
    (root / "red" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "green" / "empty.jpg").write_bytes(b"")
    (root / "blue" / "notes.jpg").write_text("this is not an image\n")
    return root


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `playwright install` needs the web
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--headless",
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Playwright's sync driver, for browser tests against Debian's Chromium."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver
