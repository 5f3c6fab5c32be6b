"""The head fit: a convex fit on cached features, then fine-tuning from that head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData, auto_batch_size
from ursa.models.backbones import classifier_of
from ursa.train import Learner, SilentLogger
from ursa.train.head_fit import Features, choose_weight_decay, fit_linear, fit_linear_head


def _blobs(per_class: int, classes: int = 4, dim: int = 32, seed: int = 0) -> Features:
    """Well separated Gaussian blobs, two rows (views) per image."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    values = centres[labels] + rng.normal(0, 1, size=(len(labels), dim))
    views = values + rng.normal(0, 0.1, size=values.shape)
    groups = np.arange(len(labels))
    return Features(
        values=np.concatenate([values, views]).astype(np.float16),
        labels=np.concatenate([labels, labels]).astype(np.int64),
        groups=np.concatenate([groups, groups]).astype(np.int64),
    )


def test_head_fit_converges_on_a_separable_set() -> None:
    features = _blobs(per_class=20)
    weight, bias, loss = fit_linear(features, 4, weight_decay=1e-4)
    assert loss < 0.05  # converged: a separable set is fitted almost exactly
    logits = torch.from_numpy(features.values).float() @ weight.T + bias
    assert (logits.argmax(1).numpy() == features.labels).all()


def test_stronger_weight_decay_gives_a_smaller_head() -> None:
    features = _blobs(per_class=20)
    weak, _, weak_loss = fit_linear(features, 4, weight_decay=1e-4)
    strong, _, strong_loss = fit_linear(features, 4, weight_decay=1.0)
    assert strong.norm() < weak.norm() / 3
    assert strong_loss > weak_loss


def test_cross_validation_keeps_views_of_an_image_together_and_picks_from_the_grid() -> None:
    features = _blobs(per_class=10)
    weight_decay, cv_loss = choose_weight_decay(features, 4, grid=(1e-3, 1e-1, 10.0))
    assert weight_decay in (1e-3, 1e-1)  # 10 flattens a separable problem's head
    assert cv_loss is not None and cv_loss < 0.5
    fitted = fit_linear_head(features, 4)
    assert fitted.rows == len(features.labels) and fitted.cv_loss is not None


def test_one_image_a_class_cannot_be_cross_validated() -> None:
    features = _blobs(per_class=1)
    weight_decay, cv_loss = choose_weight_decay(features, 4, grid=(1e-3, 1e-2, 1e-1))
    assert (weight_decay, cv_loss) == (1e-2, None)


def test_automatic_batch_size_gives_enough_steps() -> None:
    assert auto_batch_size(29) == 2
    assert auto_batch_size(100) == 6
    assert auto_batch_size(10_000) == 64
    for images in (20, 35, 50, 100, 250, 1000):
        assert images // auto_batch_size(images) >= 8


def _count_steps(learner: Learner, epochs: int) -> int:
    steps = 0
    real_step = torch.optim.AdamW.step

    def counting(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        nonlocal steps
        steps += 1
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = counting  # type: ignore[method-assign]
    try:
        learner.fine_tune(epochs)
    finally:
        torch.optim.AdamW.step = real_step  # type: ignore[method-assign]
    return steps


def test_a_tiny_training_set_gets_at_least_8_steps_an_epoch(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=8)  # 24 images, 19 for training
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    assert _count_steps(learner, 1) >= 8
    assert [r.phase for r in learner.history] == ["head", "unfrozen", "average"]


def test_an_explicit_batch_size_wins(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=8)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0, batch_size=16)
    assert data.batch_size == 16
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    assert _count_steps(learner, 1) == 1  # 19 images in batches of 16, the last dropped


def test_fine_tune_fits_the_head_before_the_body_moves(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=12)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    body = next(iter(learner.model.conv_stem.parameters()))
    before = body.detach().clone()
    fitted = learner.fit_head()
    assert torch.equal(body, before)  # the head fit never touches the body
    classifier = learner.model.get_classifier()
    assert torch.allclose(classifier.weight, fitted.weight)
    assert learner.history[-1].phase == "head"
    assert learner.history[-1].accuracy > 0.9  # colours are linearly separable features
    assert fitted.weight_decay > 0


def test_fastai_frozen_epochs_stay_available(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=8)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    records = learner.fine_tune(1, head="epochs", freeze_epochs=2)
    assert [r.phase for r in records] == ["frozen", "frozen", "unfrozen"]


@pytest.mark.parametrize("bad", [{"head": "probe"}, {"epochs": 0}])
def test_fine_tune_refuses_bad_settings(tmp_path: Path, bad: dict[str, object]) -> None:
    from ursa.core.errors import ConfigError

    folder = make_class_folder(tmp_path / "c", per_class=4)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    with pytest.raises(ConfigError):
        learner.fine_tune(**bad)  # type: ignore[arg-type]


def test_automatic_epochs_stop_at_an_epoch_that_does_not_beat_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the average, automatic epochs stop after an epoch that is no better than the
    head fit (a rate of 10 wrecks the first one); explicit epochs all run, as asked; and
    with the average (the default) the automatic schedule runs to its end."""
    from ursa.train import learner as learner_module
    from ursa.train.learner import auto_epochs

    monkeypatch.setattr(learner_module, "FINE_TUNE_MIN_IMAGES", 0)  # fine-tune this tiny set
    folder = make_class_folder(tmp_path / "c", per_class=12)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    assert auto_epochs(len(data.train_items), data.batch_size) >= 2
    automatic = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), seed=0)
    automatic.fine_tune(base_lr=10.0, average=False)
    assert [r.phase for r in automatic.history] == ["head", "unfrozen"]
    explicit = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), seed=0)
    explicit.fine_tune(2, base_lr=10.0, average=False)
    assert [r.phase for r in explicit.history] == ["head", "unfrozen", "unfrozen"]
    averaged = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), seed=0)
    averaged.fine_tune(base_lr=10.0)
    epochs = auto_epochs(len(data.train_items), data.batch_size)
    assert [r.phase for r in averaged.history] == ["head", *["unfrozen"] * epochs, "average"]
    assert averaged.kept == "the head fit"  # the wrecked epochs' average loses to the head


def test_automatic_epochs_leave_a_small_set_to_the_head_fit(tmp_path: Path) -> None:
    """Under FINE_TUNE_MIN_IMAGES training images, fine_tune() fits the head and stops
    there, with the body trainable afterwards; given epochs, it fine-tunes anyway."""
    from ursa.train.learner import FINE_TUNE_MIN_IMAGES

    folder = make_class_folder(tmp_path / "c", per_class=12)
    data = ImageData.from_folder(folder, size=32, num_workers=0, seed=0)
    assert len(data.train_items) < FINE_TUNE_MIN_IMAGES
    automatic = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), seed=0)
    head = classifier_of(automatic.model).weight
    table = automatic.fine_tune()
    assert [r.phase for r in table] == ["head"]
    assert automatic.kept == "the head fit"
    assert all(p.requires_grad for p in automatic.model.parameters())  # unfrozen, as fastai
    assert head.requires_grad
    explicit = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), seed=0)
    assert [r.phase for r in explicit.fine_tune(1)] == ["head", "unfrozen", "average"]
