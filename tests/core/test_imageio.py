from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import jpeg_bytes
from ursa.core.errors import ImageError
from ursa.core.imageio import open_image


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A 40×20 image stored with orientation 6 (rotate 90° clockwise to view) is 20×40 upright.
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(image, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    opened = open_image(path)
    assert opened.size == (20, 40)
    top = np.asarray(opened)[2, 10]  # the left band is now on top
    assert top[2] > 150 and top[0] < 100


def test_transparency_composited_onto_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    opened = open_image(_save(rgba, tmp_path / "a.png"))
    assert opened.mode == "RGB"
    assert opened.getpixel((5, 5)) == (255, 255, 255)
    assert opened.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["P", "LA", "L", "CMYK", "1"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    image = Image.new("RGB", (12, 9), (200, 100, 50)).convert(mode)
    suffix = "jpg" if mode == "CMYK" else "png"
    opened = open_image(_save(image, tmp_path / f"x.{suffix}"))
    assert opened.mode == "RGB" and opened.size == (12, 9)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    array = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    path = _save(Image.fromarray(array), tmp_path / "deep.png")
    opened = np.asarray(open_image(path))
    assert opened.shape == (8, 8, 3)
    assert opened[0, 0, 0] == 0 and opened[-1, -1, 0] == 255
    assert len(np.unique(opened[..., 0])) > 32  # a real gradient, not a clipped white image


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    path = _save(image, tmp_path / "p.png", transparency=0)
    opened = open_image(path)
    assert opened.getpixel((0, 0)) == (255, 255, 255)
    assert opened.getpixel((1, 1)) == (0, 255, 0)


def test_pixel_limit_refuses_before_decoding(tmp_path: Path) -> None:
    path = _save(Image.new("L", (300, 300)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        open_image(path, max_pixels=10_000)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is text\n", "not an image"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as caught:
        open_image(path)
    assert str(path) in str(caught.value)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = jpeg_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        open_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")


def test_bytes_file_objects_and_pil_images_agree(tmp_path: Path) -> None:
    image = Image.new("RGB", (7, 5), (10, 20, 30))
    data = io.BytesIO()
    image.save(data, format="PNG")
    raw = data.getvalue()
    from_bytes = open_image(raw)
    from_stream = open_image(io.BytesIO(raw))
    from_pil = open_image(image)
    for opened in (from_bytes, from_stream, from_pil):
        assert opened.getpixel((3, 3)) == (10, 20, 30)


def test_draft_decoding_still_catches_truncation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = jpeg_bytes(Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)))
    small = open_image(data, draft=64)
    assert 64 <= min(small.size) < 512  # decoded at a reduced scale
    with pytest.raises(ImageError, match="truncated"):
        open_image(data[: len(data) * 3 // 4], draft=64)
