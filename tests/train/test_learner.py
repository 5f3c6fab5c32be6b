from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import ursa
from tests.conftest import TINY_ARCH, make_class_folder
from ursa.core.errors import ConfigError
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger


def _learner(folder: Path, **data_kwargs: object) -> Learner:
    data = ImageData.from_folder(
        folder,
        size=32,
        batch_size=8,
        num_workers=0,
        seed=0,
        **data_kwargs,  # type: ignore[arg-type]
    )
    return Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())


def test_one_cycle_follows_fastai_schedule(colour_folder: Path) -> None:
    learner = _learner(colour_folder)
    seen: list[tuple[float, float]] = []
    real_step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        group = self.param_groups[-1]
        seen.append((group["lr"], group["betas"][0]))
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy  # type: ignore[method-assign]
    try:
        learner.fit_one_cycle(4, 1e-2)
    finally:
        torch.optim.AdamW.step = real_step  # type: ignore[method-assign]
    rates = [lr for lr, _ in seen]
    moms = [m for _, m in seen]
    assert rates[0] == pytest.approx(1e-2 / 25)  # starts at lr_max / div
    assert max(rates) == pytest.approx(1e-2, rel=0.05)  # peaks at lr_max
    assert rates[-1] < 1e-2 / 1e3  # ends near lr_max / final_div
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=0.01)
    peak = rates.index(max(rates))
    assert 0.15 < peak / len(rates) < 0.35  # pct_start=0.25


def test_fine_tune_freezes_then_unfreezes_with_discriminative_rates(colour_folder: Path) -> None:
    learner = _learner(colour_folder)
    body = next(iter(learner.model.conv_stem.parameters()))
    before = body.detach().clone()
    learner.freeze()
    assert not body.requires_grad
    records = learner.fit_one_cycle(1, 1e-2)
    assert torch.equal(body, before)  # frozen: body weights untouched
    assert records[0].phase == "frozen"
    learner.unfreeze()
    _, max_lrs = learner._optimizer((1e-4, 1e-2))
    assert sorted(set(max_lrs)) == pytest.approx([1e-4, 1e-3, 1e-2])  # geometric across 3 groups
    learner.fit_one_cycle(1, (1e-4, 1e-2))
    assert not torch.equal(body, before)


def test_fine_tune_learns_the_colours(tmp_path: Path) -> None:
    learner = _learner(make_class_folder(tmp_path / "c", per_class=30), valid_pct=0.25)
    # every pass in fp32, as validate() runs
    learner.options = replace(learner.options, precision="fp32", eval_precision=None)
    records = learner.fine_tune(3, base_lr=2e-2)
    assert [r.phase for r in records] == ["head", "unfrozen", "unfrozen", "unfrozen", "average"]
    assert [r.epoch for r in records] == [0, 1, 2, 3, 4]
    metrics = learner.validate()
    assert metrics.count == 24
    assert metrics.accuracy >= 0.9  # chance is 1/3
    assert metrics.error_rate == pytest.approx(1 - metrics.accuracy)
    # the model ends as the average of the head fit and the last epoch, unless the head
    # fit validates better (a tie keeps the head fit)
    kept = records[-1] if records[-1].error_rate < records[0].error_rate else records[0]
    assert metrics.loss == pytest.approx(kept.valid_loss, rel=1e-6)


def test_same_seed_same_result(colour_folder: Path) -> None:
    results = []
    for _ in range(2):
        learner = _learner(colour_folder)
        learner.fit_one_cycle(1, 1e-2)
        results.append((learner.history[-1].train_loss, learner.validate().loss))
    assert results[0] == results[1]


def test_predict_matches_loaded_bundle_on_every_validation_image(
    colour_folder: Path, tmp_path: Path
) -> None:
    learner = _learner(colour_folder)
    learner.fine_tune(1, base_lr=1e-2)
    bundle = learner.export(tmp_path / "colours.ursa")
    model = ursa.load(bundle)
    paths = [item.path for item in learner.data.valid_items]
    ours = learner.predict_batch(paths)
    theirs = model.predict_batch(paths)
    assert [p.label for p in ours] == [p.label for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5
        )
    single = learner.predict(paths[0])
    assert single.label == ours[0].label
    assert math.isclose(sum(single.probabilities.values()), 1.0, rel_tol=1e-6)
    assert model.config.class_names == ["blue", "green", "red"]
    assert [row["epoch"] for row in model.metrics["history"]] == [0, 1, 2]


def test_predict_accepts_pil_images_and_bytes(colour_folder: Path) -> None:
    from PIL import Image

    learner = _learner(colour_folder)
    path = learner.data.valid_items[0].path
    by_path = learner.predict(path)
    by_pil = learner.predict(Image.open(path))
    by_bytes = learner.predict(path.read_bytes())
    assert by_path.probabilities == pytest.approx(by_pil.probabilities)
    assert by_path.probabilities == pytest.approx(by_bytes.probabilities)


def test_bad_settings_are_refused(colour_folder: Path) -> None:
    learner = _learner(colour_folder)
    with pytest.raises(ConfigError, match="epochs=0"):
        learner.fit_one_cycle(0)
    with pytest.raises(ConfigError, match="low <= high"):
        learner.fit_one_cycle(1, (1e-2, 1e-4))
    with pytest.raises(ConfigError, match="drop_rate"):
        Learner(learner.data, arch=TINY_ARCH, pretrained=False, drop_rate=1.5)


def test_training_skips_unreadable_files(messy_folder: Path) -> None:
    learner = _learner(messy_folder)
    learner.fit_one_cycle(1, 1e-2)
    assert len(learner.data.skipped) == 3
    assert len(learner.history) == 1
