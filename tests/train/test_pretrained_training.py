"""The real pretrained backbone, fine-tuned for real on real images (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ursa
from ursa.data.core import ImageData
from ursa.demo import write_digits
from ursa.train import Learner, SilentLogger


@pytest.mark.slow
def test_lite0_fine_tunes_on_three_digits(tmp_path: Path) -> None:
    write_digits(tmp_path, holdout_per_class=0)
    data_dir = tmp_path / "data"
    for digit in "3456789":  # keep 0, 1 and 2: about 530 images
        for path in (data_dir / digit).iterdir():
            path.unlink()
        (data_dir / digit).rmdir()
    data = ImageData.from_folder(data_dir, size=48, batch_size=32, num_workers=0, augment="none")
    learner = Learner(data, logger=SilentLogger())  # efficientnet_lite0, ImageNet weights
    learner.fine_tune(1, base_lr=1e-2)
    assert learner.validate().accuracy >= 0.9  # chance is 1/3
    bundle = learner.export(tmp_path / "digits.ursa")
    model = ursa.load(bundle)
    paths = [item.path for item in data.valid_items]
    assert [p.label for p in model.predict_batch(paths)] == [
        p.label for p in learner.predict_batch(paths)
    ]
