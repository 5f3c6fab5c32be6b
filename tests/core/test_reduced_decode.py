"""Reduced-scale JPEG decoding: smaller decodes, the same tensors in validation and serving."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ursa.core.preprocess import PreprocessConfig, load_input, prepare_input
from ursa.data.core import ImageData
from ursa.data.transforms import train_decode_size


def _photo(width: int, height: int, *, seed: int, exif_rotate: bool = False) -> bytes:
    """A JPEG of a real photo (scikit-image's cat or coffee), resized and tinted by ``seed``."""
    source = skdata.chelsea() if seed % 2 else skdata.coffee()
    image = Image.fromarray(source).resize((width, height), Image.Resampling.BILINEAR)
    tint = np.asarray(image, dtype=np.int16) + np.array([seed * 7 % 40, 0, -(seed * 5 % 30)])
    image = Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
        image.save(buffer, "JPEG", quality=90, exif=exif)
    else:
        image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jpegs")
    shapes = [(640, 480), (480, 640), (1600, 1200), (300, 900), (2000, 500)]
    for label in ("a", "b"):
        (root / label).mkdir()
        for index, (width, height) in enumerate(shapes):
            seed = index + (10 if label == "b" else 0)
            data = _photo(width, height, seed=seed, exif_rotate=index == 2)
            (root / label / f"{index}.jpg").write_bytes(data)
    return root


def test_jpegs_decode_at_a_reduced_scale_that_keeps_the_input_size() -> None:
    jpeg = _photo(640, 480, seed=1)
    config = PreprocessConfig(size=224, reduced_decode=True)
    assert load_input(jpeg, config).size == (320, 240)
    assert load_input(jpeg, PreprocessConfig(size=224, reduced_decode=False)).size == (640, 480)
    # No reduction when half the size would fall below the input side.
    assert load_input(jpeg, PreprocessConfig(size=256, reduced_decode=True)).size == (640, 480)
    big = _photo(4000, 3000, seed=2)
    assert load_input(big, PreprocessConfig(size=224)).size == (500, 375)  # 1/8 scale


def test_reduced_decode_gives_nearly_the_same_input_as_a_full_decode() -> None:
    for width, height in [(640, 480), (1600, 1200)]:
        jpeg = _photo(width, height, seed=3)
        fast = prepare_input(jpeg, PreprocessConfig(size=224, reduced_decode=True))
        full = prepare_input(jpeg, PreprocessConfig(size=224, reduced_decode=False))
        # Inputs span [-1, 1]; the two resizes differ by a fraction of a grey level on average.
        assert float(np.abs(fast - full).mean()) < 0.02
        assert not np.array_equal(fast, full)  # it really decoded differently


@pytest.mark.parametrize("resize", ["crop", "pad", "squish"])
def test_validation_tensors_equal_the_serving_path_for_jpegs(
    jpeg_folder: Path, resize: str
) -> None:
    data = ImageData.from_folder(
        jpeg_folder,
        size=64,
        resize=resize,
        valid_pct=0.5,
        num_workers=0,
        seed=0,  # type: ignore[arg-type]
    )
    config = PreprocessConfig(size=64, resize=resize, reduced_decode=True)  # type: ignore[arg-type]
    _, valid = data.dataloaders(config)
    inputs = np.concatenate([batch.numpy() for batch, _ in valid])
    served = np.stack([prepare_input(item.path.read_bytes(), config) for item in data.valid_items])
    assert len(served) == 4  # two of five per class
    np.testing.assert_allclose(served, inputs, atol=1e-6)


def test_exif_orientation_survives_reduced_decoding(jpeg_folder: Path) -> None:
    rotated = jpeg_folder / "a" / "2.jpg"  # stored 1600×1200, shown 1200×1600
    image = load_input(rotated, PreprocessConfig(size=224))
    assert image.size == (300, 400)  # 1/4 scale, then turned upright


def test_old_bundles_keep_full_decoding() -> None:
    values = PreprocessConfig(size=96).to_dict()
    assert values["reduced_decode"] is True
    del values["reduced_decode"]  # as written before the setting existed
    assert PreprocessConfig.from_dict(values).reduced_decode is False


def test_training_images_keep_enough_pixels_for_the_smallest_random_crop() -> None:
    crop = PreprocessConfig(size=224, resize="crop")
    assert train_decode_size(crop, 0.35) == 379  # ceil(224 / sqrt(0.35))
    assert train_decode_size(crop, 1.0) == 224
    assert train_decode_size(PreprocessConfig(size=224, resize="pad"), 0.35) == 224
    assert train_decode_size(PreprocessConfig(size=224, reduced_decode=False), 0.35) is None
    # No random crop: training decodes as validation does, and never beyond what the
    # decode cache keeps (2 × size).
    assert train_decode_size(crop, 0.35, augment="none") == 224
    assert train_decode_size(crop, 0.01) == 448
