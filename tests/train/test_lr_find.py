from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger
from ursa.train.lr_find import valley


def test_valley_is_inside_the_longest_fall() -> None:
    lrs = list(np.geomspace(1e-6, 1.0, 100))
    losses = [2.0] * 30 + list(np.linspace(2.0, 0.5, 40)) + list(np.linspace(0.5, 5.0, 30))
    suggestion = valley(lrs, losses)
    # halfway (in log scale) from the last flat point (30) to the bottom (69)
    assert math.isclose(math.log(suggestion), (math.log(lrs[30]) + math.log(lrs[69])) / 2)


def test_lr_find_sweeps_suggests_plots_and_restores_everything(tmp_path: Path) -> None:
    data = ImageData.from_folder(
        make_class_folder(tmp_path / "c", per_class=20), size=32, batch_size=16, num_workers=0
    )
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.freeze()
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    rng_before = torch.get_rng_state()
    result = learner.lr_find(steps=30, end_lr=1.0)
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert torch.equal(torch.get_rng_state(), rng_before)
    # one pass: 48 training images = 3 batches of 16, each cut in 2 pieces of 8 images
    assert len(result.lrs) == 6 or (result.diverged and len(result.lrs) < 6)
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == 1e-7
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    ratio = result.lrs[1] / result.lrs[0]
    assert math.isclose(result.lrs[2] / result.lrs[1], ratio, rel_tol=1e-9)  # exponential
    result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_short_or_flat_sweep_is_called_unusable() -> None:
    from ursa.train.lr_find import unusable_reason

    falling = [2.0 - 0.01 * i for i in range(40)] + [3.0, 9.0]
    assert unusable_reason(falling) is None
    assert "only 10 steps" in (unusable_reason(falling[:10]) or "")
    flat = [1.0 + 0.001 * (i % 3) for i in range(40)]
    assert "never fell" in (unusable_reason(flat) or "")
