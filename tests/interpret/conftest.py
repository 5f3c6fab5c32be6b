"""A small trained model shared by the interpretation tests (trained once per session).

The data: three colour classes split beforehand into ``train/`` and ``valid/``,
with planted problems the interpretation must surface:

* two mislabeled training images: a red image in ``train/blue/`` and a green
  one in ``train/red/`` (names start with ``planted``);
* a leak: a training image copied into ``valid/red/``;
* a manifest (``ursa.sqlite``) recording the source and licence of two images.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS, TINY_ARCH, colour_image, make_class_folder
from ursa.core.manifest import ImageRecord, Manifest
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger

PLANTED = ("train/blue/planted-red.png", "train/red/planted-green.png")
LEAK = "valid/red/leak-of-train-red-03.png"


@dataclass(frozen=True)
class Trained:
    root: Path
    learner: Learner


def make_planted_folder(root: Path) -> Path:
    make_class_folder(root / "train", per_class=24, seed=0)
    make_class_folder(root / "valid", per_class=8, seed=1)
    rng = np.random.default_rng(7)
    colour_image(CLASS_COLOURS["red"], rng).save(root / PLANTED[0])
    colour_image(CLASS_COLOURS["green"], rng).save(root / PLANTED[1])
    shutil.copyfile(root / "train/red/03.png", root / LEAK)
    with Manifest(root) as manifest:
        for path, creator in (("train/red/00.png", "Ann Example"), ("train/blue/00.png", "")):
            manifest.put(
                ImageRecord(
                    path=path, sha256="", label=path.split("/")[1], split="train",
                    provider="openverse", license="cc-by 4.0", creator=creator,
                    source_url=f"https://images.example.org/{path}",
                )
            )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny model fine-tuned on the planted folder (a few seconds on a quiet 2-core CPU)."""
    root = make_planted_folder(tmp_path_factory.mktemp("interpret") / "colours")
    data = ImageData.from_folder(root, size=32, batch_size=8, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fine_tune(2, base_lr=2e-2)
    return Trained(root, learner)
