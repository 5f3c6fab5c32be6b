from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ursa.core.errors import ConfigError
from ursa.core.preprocess import PreprocessConfig, preprocess, resize_image


@pytest.mark.parametrize("method", ["crop", "pad", "squish"])
@pytest.mark.parametrize("shape", [(100, 50), (50, 100), (64, 64), (7, 300)])
def test_output_size_is_exact(method: str, shape: tuple[int, int]) -> None:
    image = Image.new("RGB", shape, (255, 255, 255))
    assert resize_image(image, 32, method, "bicubic").size == (32, 32)


def test_pad_keeps_aspect_with_zero_bands() -> None:
    image = Image.new("RGB", (100, 50), (255, 255, 255))
    padded = np.asarray(resize_image(image, 40, "pad", "bilinear"))
    rows = padded[..., 0].max(axis=1)
    assert (rows[:10] == 0).all() and (rows[-10:] == 0).all()  # bands above and below
    assert (padded[12:28] > 250).all()  # the image, 40×20, in the middle


def test_crop_takes_the_centre() -> None:
    image = Image.new("RGB", (90, 30), (0, 0, 0))
    image.paste((255, 255, 255), (30, 0, 60, 30))  # white centre third
    cropped = np.asarray(resize_image(image, 30, "crop", "nearest"))
    assert (cropped > 250).all()


def test_normalisation_matches_the_formula() -> None:
    config = PreprocessConfig(size=8, resize="squish", mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    image = Image.new("RGB", (8, 8), (255, 102, 0))
    tensor = preprocess(image, config)
    assert tensor.shape == (3, 8, 8) and tensor.dtype == np.float32
    expected = [(1.0 - 0.5) / 0.5, (0.4 - 0.4) / 0.2, (0.0 - 0.3) / 0.1]
    np.testing.assert_allclose(tensor[:, 0, 0], expected, atol=1e-6)


def test_config_names_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        PreprocessConfig(size=2, resize="zoom", std=(0.5, 0.0, 0.5))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "size=2" in message and "resize='zoom'" in message and "std=" in message


def test_config_round_trips_through_a_dict() -> None:
    config = PreprocessConfig(size=96, resize="pad", interpolation="bilinear")
    assert PreprocessConfig.from_dict(config.to_dict()) == config
