"""Resize methods (crop / pad with each fill / squish) and the training resizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ursa.core.preprocess import PAD_MODES, RESIZE_METHODS, PreprocessConfig, resize_image
from ursa.data.transforms import train_transform

#: Odd shapes (width, height): one-pixel-thin lines, huge aspect ratios, primes, a single pixel.
ODD_SHAPES = [(1, 1), (1, 300), (300, 1), (2, 999), (1000, 3), (17, 31), (64, 64), (97, 13)]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(30, 226, (height, width, 3), dtype=np.uint8))


#: Every resize, with each fill for pad.
METHODS = [("crop", "zeros"), ("squish", "zeros")] + [("pad", mode) for mode in PAD_MODES]


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize(("method", "pad_mode"), METHODS)
def test_every_method_gives_exactly_the_size(
    method: str, pad_mode: str, shape: tuple[int, int]
) -> None:
    out = resize_image(noise(*shape), 24, method, "bilinear", pad_mode)
    assert out.size == (24, 24) and out.mode == "RGB"


def test_crop_of_a_very_long_thin_image_resamples_only_the_centre() -> None:
    """Scaling the whole image first would need a 64 × 640,000,000 pixel intermediate."""
    line = Image.new("RGB", (1, 10_000_000), (90, 120, 150))
    line.paste((250, 250, 250), (0, 5_000_000, 1, 5_000_001))  # one white pixel mid-line
    out = np.asarray(resize_image(line, 64, "crop", "nearest"))
    assert out.shape == (64, 64, 3)
    # The centre square straddles the white pixel and the one above it: those two only.
    assert {tuple(p) for p in out.reshape(-1, 3)} <= {(90, 120, 150), (250, 250, 250)}
    assert (out == out[:, :1]).all()  # one source column: every row is uniform


@pytest.mark.parametrize("shape", [(100, 50), (50, 100), (300, 7), (7, 300), (1, 40), (33, 32)])
def test_pad_keeps_the_aspect_ratio(shape: tuple[int, int]) -> None:
    width, height = shape
    white = Image.new("RGB", shape, (255, 255, 255))
    padded = np.asarray(resize_image(white, 40, "pad", "bilinear", "zeros"))
    content = padded.max(axis=2) > 0
    rows, columns = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    box_h, box_w = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    scale = 40 / max(width, height)
    assert abs(box_w - width * scale) <= 1 and abs(box_h - height * scale) <= 1
    # Centred: the margins on either side differ by at most a pixel.
    assert abs(rows[0] - (39 - rows[-1])) <= 1 and abs(columns[0] - (39 - columns[-1])) <= 1


def tall_image() -> np.ndarray:
    """20 × 40 (w × h): every column a different colour, so fills can be told apart."""
    pixels = np.zeros((40, 20, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(20, dtype=np.uint8)[None, :] * 12 + 10
    pixels[..., 1] = 200
    pixels[..., 2] = np.arange(40, dtype=np.uint8)[:, None] * 5
    return pixels


def test_pad_zeros_fills_black() -> None:
    padded = np.asarray(resize_image(Image.fromarray(tall_image()), 40, "pad", "nearest", "zeros"))
    assert (padded[:, :10] == 0).all() and (padded[:, 30:] == 0).all()
    np.testing.assert_array_equal(padded[:, 10:30], tall_image())  # nearest, same height


def test_pad_border_repeats_the_edge_pixels() -> None:
    image = Image.fromarray(tall_image())
    padded = np.asarray(resize_image(image, 40, "pad", "nearest", "border"))
    content = padded[:, 10:30]
    np.testing.assert_array_equal(content, tall_image())
    for column in range(10):  # every margin column repeats the content's edge column
        np.testing.assert_array_equal(padded[:, column], content[:, 0])
        np.testing.assert_array_equal(padded[:, 30 + column], content[:, -1])


def test_pad_reflection_mirrors_the_image() -> None:
    image = Image.fromarray(tall_image())
    padded = np.asarray(resize_image(image, 40, "pad", "nearest", "reflection"))
    content = padded[:, 10:30]
    np.testing.assert_array_equal(content, tall_image())
    for k in range(10):  # mirrored about the edge pixel: k+1 columns out is k+1 columns in
        np.testing.assert_array_equal(padded[:, 9 - k], content[:, 1 + k])
        np.testing.assert_array_equal(padded[:, 30 + k], content[:, -2 - k])


def test_one_pixel_thin_images_pad_without_failing_in_every_mode() -> None:
    line = Image.fromarray(np.full((50, 1, 3), 180, dtype=np.uint8))  # 1 wide, 50 tall
    for mode in PAD_MODES:
        padded = np.asarray(resize_image(line, 20, "pad", "bilinear", mode))
        assert padded.shape == (20, 20, 3)
        expected_margin = 0 if mode == "zeros" else 180  # a thin line repeats its edge
        assert padded[:, 0].max() == expected_margin


def test_squish_ignores_aspect_and_crop_takes_the_middle() -> None:
    halves = np.zeros((10, 90, 3), dtype=np.uint8)
    halves[:, 45:] = 255  # left black, right white
    squished = np.asarray(resize_image(Image.fromarray(halves), 30, "squish", "nearest"))
    assert (squished[:, :14] == 0).all() and (squished[:, 16:] == 255).all()  # both halves kept
    cropped = np.asarray(resize_image(Image.fromarray(halves), 10, "crop", "nearest"))
    assert cropped.shape == (10, 10, 3)
    assert (cropped[:, :5] == 0).all() and (cropped[:, 5:] == 255).all()  # the centre


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("method", RESIZE_METHODS)
@pytest.mark.parametrize("augment", ["default", "no_flip"])
def test_training_transforms_give_exactly_size_by_size(
    method: str, augment: str, shape: tuple[int, int]
) -> None:
    config = PreprocessConfig(size=20, resize=method, pad_mode="reflection")  # type: ignore[arg-type]
    transform = train_transform(config, augment, min_scale=0.2)
    for seed in range(3):
        torch.manual_seed(seed)
        out = transform(noise(*shape, seed=seed))
        assert isinstance(out, torch.Tensor)
        assert out.shape == (3, 20, 20) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_random_resized_crop_respects_min_scale() -> None:
    """With min_scale 1 the crop keeps the whole (square) image; below 1 it zooms in."""
    gradient = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))
    image = Image.fromarray(gradient)
    config = PreprocessConfig(size=16, resize="crop", interpolation="bilinear")
    whole = train_transform(config, "none")(image)
    full = train_transform(config, "no_flip", min_scale=1.0, batch_augment=True)
    torch.manual_seed(0)

    # A square image at scale 1 and ratio near 1 gives nearly the whole frame.
    def span(tensor: torch.Tensor) -> float:  # how much of the gradient a row shows
        return float(tensor[0, 0].max() - tensor[0, 0].min())

    assert min(span(full(image)) for _ in range(5)) > 0.7 * span(whole)
    zoomed = train_transform(config, "no_flip", min_scale=0.05, batch_augment=True)
    assert min(span(zoomed(image)) for _ in range(20)) < 0.6 * span(whole)
