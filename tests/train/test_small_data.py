"""Every default on ten real photos a class: the case the head fit exists for (slow)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
         "boot")  # fmt: skip


def _read(name: str, offset: int) -> np.ndarray:
    with gzip.open(FASHION_MNIST / name) as stream:
        return np.frombuffer(stream.read(), np.uint8, offset=offset)


def _fashion_folder(root: Path, train_per_class: int, valid_per_class: int) -> Path:
    """``root/train/<class>/`` from Fashion-MNIST's training split, ``root/valid/`` from
    its test split: the first images of each class, 28 px PNGs as the dataset has them."""
    for split, prefix, per_class in (("train", "train", train_per_class),
                                     ("valid", "t10k", valid_per_class)):  # fmt: skip
        images = _read(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        labels = _read(f"{prefix}-labels-idx1-ubyte.gz", 8)
        for index, name in enumerate(NAMES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for position in np.flatnonzero(labels == index)[:per_class]:
                Image.fromarray(images[position]).save(folder / f"{position:05d}.png")
    return root


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason="needs apt-get install dataset-fashion-mnist"
)
def test_ten_fashion_images_a_class_with_every_default(tmp_path: Path) -> None:
    data = ImageData.from_folder(_fashion_folder(tmp_path / "fashion", 10, 20))
    learner = Learner(data, logger=SilentLogger())  # EfficientNet-Lite0, ImageNet weights
    learner.fine_tune()
    assert data.batch_size == 6  # 100 images: at least 16 steps an epoch
    assert learner.history[0].phase == "head"
    # Chance is 90 %; the defaults before the head fit ended near 54 % on such a set.
    assert learner.validate().error_rate <= 0.30
    assert not any("chance" in warning for warning in learner.warnings)
