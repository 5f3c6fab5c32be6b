from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import CLASS_COLOURS
from ursa.core.errors import ConfigError
from ursa.data.core import ImageData


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"), dtype=np.float32)


@pytest.fixture
def data(colour_folder: Path) -> ImageData:
    return ImageData.from_folder(colour_folder, size=24, num_workers=0, seed=1)


def test_show_batch_writes_a_labelled_grid(data: ImageData, tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    path = tmp_path / "out" / "batch.png"
    figure = data.show_batch(n=9, path=path)
    assert len(figure.axes) == 9
    titles = [axes.get_title() for axes in figure.axes]
    assert set(titles) <= set(CLASS_COLOURS) and len(set(titles)) >= 2
    pixels = png_pixels(path)
    assert pixels.std() > 20  # images and text, not a blank page
    assert matplotlib.get_backend() == backend  # the global backend is left alone
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary file left behind


def test_each_cell_shows_its_labelled_image(data: ImageData) -> None:
    """The colour classes make the labels checkable: a cell titled red is mostly red."""
    for split in ("train", "valid"):
        figure = data.show_batch(n=6, split=split)
        for axes in figure.axes:
            shown = axes.get_images()[0].get_array()  # (H, W, 3) in [0, 1]
            channel_means = np.asarray(shown).reshape(-1, 3).mean(axis=0)
            expected = np.argmax(CLASS_COLOURS[axes.get_title()])
            assert int(np.argmax(channel_means)) == expected


def test_more_cells_asked_than_images_shows_them_all(data: ImageData, tmp_path: Path) -> None:
    figure = data.show_batch(n=500, split="valid", path=tmp_path / "valid.png")
    assert len(figure.axes) == len(data.valid_items) < 500
    assert png_pixels(tmp_path / "valid.png").std() > 20


def test_validation_grid_is_the_same_every_time(data: ImageData) -> None:
    def cells() -> list[np.ndarray]:
        figure = data.show_batch(n=4, split="valid")
        return [np.asarray(axes.get_images()[0].get_array()) for axes in figure.axes]

    for first, second in zip(cells(), cells(), strict=True):
        np.testing.assert_array_equal(first, second)


def test_show_augmentations_of_a_file_an_image_and_the_default(
    data: ImageData, tmp_path: Path
) -> None:
    stripes = np.zeros((48, 64, 3), dtype=np.uint8)
    stripes[:, ::8] = 255
    stripes[::6, :, 1] = 180
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    for image in (tmp_path / "stripes.png", Image.fromarray(stripes), None):
        path = tmp_path / "augment.png"
        figure = data.show_augmentations(image, n=5, path=path)
        assert len(figure.axes) == 5
        assert [a.get_title() for a in figure.axes] == [f"draw {k}" for k in range(1, 6)]
        assert png_pixels(path).std() > 20
    # The draws differ from each other (the augmentation is random per draw) ...
    figure = data.show_augmentations(Image.fromarray(stripes), n=4)
    shown = [np.asarray(axes.get_images()[0].get_array()) for axes in figure.axes]
    assert any(np.abs(shown[0] - other).mean() > 0.01 for other in shown[1:])


def test_showing_leaves_the_callers_random_stream_alone(data: ImageData) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    data.show_batch(n=4)
    data.show_augmentations(n=3)
    assert torch.equal(torch.rand(3), expected)


def test_no_augmentation_says_so(colour_folder: Path) -> None:
    data = ImageData.from_folder(colour_folder, size=24, num_workers=0, augment="none")
    figure = data.show_augmentations(n=3)
    assert "no augmentation" in figure.get_suptitle()
    shown = [np.asarray(axes.get_images()[0].get_array()) for axes in figure.axes]
    np.testing.assert_array_equal(shown[0], shown[1])


def test_bad_requests_say_what_to_do(data: ImageData) -> None:
    with pytest.raises(ConfigError, match="split='test'"):
        data.show_batch(split="test")
    with pytest.raises(ConfigError, match="at least 1"):
        data.show_augmentations(n=0)
