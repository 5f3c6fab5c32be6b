"""Warnings at the end of training: near chance, and too few validation images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger
from ursa.train.advice import near_chance, training_warnings


def test_near_chance_is_within_a_few_points_or_not_significantly_better() -> None:
    assert near_chance(0.65, 3, 500)  # chance is 66.7 %
    assert near_chance(0.55, 3, 30)  # 45 % right of 30 is no evidence against guessing
    assert not near_chance(0.55, 3, 500)  # ... of 500 it is
    assert not near_chance(0.05, 3, 30)
    assert not near_chance(0.0, 10, 0)  # nothing to judge


def test_few_validation_images_are_flagged() -> None:
    warnings = training_warnings(0.0, 3, 12)
    assert len(warnings) == 1 and "only 12 validation images" in warnings[0]
    assert training_warnings(0.02, 3, 200) == []


def _shuffled_labels(source: Path, target: Path, seed: int = 0) -> Path:
    """The same images dealt to the class folders at random: nothing to learn."""
    files = sorted(source.rglob("*.png"))
    classes = sorted(p.name for p in source.iterdir())
    order = np.random.default_rng(seed).permutation(len(files))
    for position, index in enumerate(order):
        folder = target / classes[position % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[index], folder / f"{position:03d}.png")
    return target


def _train(folder: Path) -> Learner:
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0, valid_pct=0.3)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fine_tune(2)
    return learner


def test_random_labels_warn_of_chance_and_a_learnable_set_does_not(tmp_path: Path) -> None:
    colours = make_class_folder(tmp_path / "colours", per_class=30)
    learnable = _train(colours)
    assert learnable.validate().error_rate < 0.2  # the kept weights (keep-best)
    assert not any("chance" in w for w in learnable.warnings)
    shuffled = _train(_shuffled_labels(colours, tmp_path / "shuffled"))
    assert any("close to chance" in w for w in shuffled.warnings)
