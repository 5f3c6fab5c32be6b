"""fine_tune's last step: the average of the head fit's and the last epoch's weights is the
model, unless the head fit validates better."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import EpochRecord, Learner, SilentLogger
from ursa.train import learner as learner_module
from ursa.train.learner import average_weights


class LastEpochWeights(SilentLogger):
    """Keeps a copy of the model's weights as each unfrozen epoch ends, and the messages."""

    def __init__(self) -> None:
        self.learner: Learner | None = None
        self.last: dict[str, torch.Tensor] = {}
        self.texts: list[str] = []

    def message(self, text: str, *, warning: bool = False) -> None:
        self.texts.append(text)

    def end_epoch(self, record: EpochRecord) -> None:
        if record.phase == "unfrozen" and self.learner is not None:
            self.last = {k: v.detach().clone() for k, v in self.learner.model.state_dict().items()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("data") / "colours", per_class=10)


def _learner(folder: Path, **kwargs: Any) -> Learner:
    data = ImageData.from_folder(folder, size=32, batch_size=8, num_workers=0, seed=0)
    kwargs.setdefault("logger", SilentLogger())
    return Learner(data, arch=TINY_ARCH, pretrained=False, **kwargs)


def test_average_weights_means_the_floats_and_keeps_the_counters() -> None:
    first = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    second = {"w": torch.tensor([4.0, 4.0]), "n": torch.tensor(7)}
    mean = average_weights(first, second)
    assert torch.equal(mean["w"], torch.tensor([2.0, 3.0]))
    assert torch.equal(mean["n"], torch.tensor(7))  # batch norm's counter: the later one


@pytest.mark.parametrize("base_lr", [1e-2, 3e-3])
def test_fine_tune_ends_with_the_average_unless_the_head_fit_validates_better(
    folder: Path, base_lr: float
) -> None:
    logger = LastEpochWeights()
    learner = _learner(folder, logger=logger)
    logger.learner = learner
    table = learner.fine_tune(2, base_lr=base_lr)
    assert [r.phase for r in table] == ["head", "unfrozen", "unfrozen", "average"]
    head, average = table[0], table[-1]
    assert average.train_loss != average.train_loss  # NaN: no training in that row
    tracker = learner._fit_tracker
    assert tracker is not None and tracker.state is not None  # the head fit's weights
    expected = (
        ("the average of the head fit and epoch 2", average_weights(tracker.state, logger.last))
        if average.error_rate < head.error_rate  # a tie keeps the head fit
        else ("the head fit", tracker.state)
    )
    assert learner.kept == expected[0]
    for name, tensor in learner.model.state_dict().items():
        assert torch.equal(tensor, expected[1][name]), name


def test_the_head_fit_stays_when_the_average_validates_worse(folder: Path) -> None:
    # A rate far too high wrecks the fine-tuned weights, and their average with the head
    learner = _learner(folder)
    table = learner.fine_tune(1, base_lr=1e4)
    head, average = table[0], table[-1]
    assert average.phase == "average" and average.error_rate > head.error_rate
    assert learner.kept == "the head fit"
    tracker = learner._fit_tracker
    assert tracker is not None and tracker.state is not None
    for name, tensor in learner.model.state_dict().items():
        assert torch.equal(tensor, tracker.state[name]), name
    assert learner.validate().error_rate == pytest.approx(head.error_rate)


def test_average_false_keeps_the_best_epoch_as_before(folder: Path, tmp_path: Path) -> None:
    learner = _learner(folder, precision="fp32")  # as validate() scores
    table = learner.fine_tune(2, base_lr=1e-2, average=False)
    assert [r.phase for r in table] == ["head", "unfrozen", "unfrozen"]
    best = min(table, key=lambda r: r.error_rate)  # a tie keeps the earlier
    assert learner.kept == ("the head fit" if best.phase == "head" else f"epoch {best.epoch}")
    assert learner.validate().loss == pytest.approx(best.valid_loss, rel=1e-6)
    assert f"kept {learner.kept}" in repr(learner)


def test_the_bundle_records_which_weights_were_kept(folder: Path, tmp_path: Path) -> None:
    from ursa.core.bundle import read_bundle

    learner = _learner(folder)
    learner.fine_tune(1, base_lr=1e-2)
    assert learner.kept is not None
    config = read_bundle(learner.export(tmp_path / "m.ursa")).config
    assert config.record.kept == learner.kept
    assert config.record.epochs == 2  # the head fit and one epoch: the average is no epoch
    learner.fit_one_cycle(1, 1e-3)  # the weights move on: no longer the ones named
    assert learner.kept is None


@pytest.mark.parametrize("weak_head", [False, True])
def test_on_a_large_set_the_last_epoch_competes_too(
    folder: Path, weak_head: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 training images are too many for a test: the threshold comes down to this set
    monkeypatch.setattr(learner_module, "LAST_EPOCH_MIN_IMAGES", 1)
    settings: dict[str, Any] = {}
    if weak_head:  # a head shrunk by a huge penalty, scored by loss: fine-tuning beats it
        fit = learner_module.fit_linear_head
        monkeypatch.setattr(
            learner_module,
            "fit_linear_head",
            lambda *a, **k: fit(*a, **{**k, "weight_decay": 300.0}),
        )
        settings["monitor"] = "valid_loss"
    logger = LastEpochWeights()
    learner = _learner(folder, logger=logger, precision="fp32", **settings)  # as validate()
    logger.learner = learner
    table = learner.fine_tune(2, base_lr=1e-2)
    assert [r.phase for r in table] == ["head", "unfrozen", "unfrozen", "average"]
    head, last, average = table[0], table[2], table[3]
    tracker = learner._fit_tracker
    assert tracker is not None and tracker.state is not None
    # the best validated of the three; a tie keeps the head fit, then the average
    monitor = learner.options.monitor
    candidates = [
        (head, "the head fit", tracker.state),
        (average, "the average of the head fit and epoch 2",
         average_weights(tracker.state, logger.last)),
        (last, "epoch 2", logger.last),
    ]  # fmt: skip
    best = min(candidates, key=lambda c: getattr(c[0], monitor))  # the first of a tie
    assert learner.kept == best[1]
    if weak_head:
        assert learner.kept == "epoch 2"  # measured: 0.96 head, 0.92 average, 0.84 last
    for name, tensor in learner.model.state_dict().items():
        assert torch.equal(tensor, best[2][name]), name
    assert learner.validate().loss == pytest.approx(best[0].valid_loss, rel=1e-5)
    said = "\n".join(logger.texts)
    assert "the best validated of the head fit, the last epoch and the average" in said
    assert f"last epoch {getattr(last, monitor):.4f}" in said


def test_under_the_threshold_the_last_epoch_is_no_candidate(folder: Path) -> None:
    logger = LastEpochWeights()
    learner = _learner(folder, logger=logger)
    learner.fine_tune(1, base_lr=1e-2)
    assert learner.kept in ("the head fit", "the average of the head fit and epoch 1")
    said = "\n".join(logger.texts)
    assert "unless the head fit validates better" in said and ", last epoch " not in said
