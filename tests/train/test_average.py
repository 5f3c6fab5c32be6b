"""fine_tune's last step: the average of the head fit's and the last epoch's weights, and
the best validated of the head fit, the last epoch and that average as the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import EpochRecord, Learner, SilentLogger
from ursa.train.learner import average_weights


class LastEpochWeights(SilentLogger):
    """Keeps a copy of the model's weights as each unfrozen epoch ends."""

    def __init__(self) -> None:
        self.learner: Learner | None = None
        self.last: dict[str, torch.Tensor] = {}

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
def test_fine_tune_ends_with_the_best_validated_of_head_last_epoch_and_average(
    folder: Path, base_lr: float
) -> None:
    logger = LastEpochWeights()
    learner = _learner(folder, logger=logger)
    logger.learner = learner
    table = learner.fine_tune(2, base_lr=base_lr)
    assert [r.phase for r in table] == ["head", "unfrozen", "unfrozen", "average"]
    head, last, average = table[0], table[-2], table[-1]
    assert average.train_loss != average.train_loss  # NaN: no training in that row
    tracker = learner._fit_tracker
    assert tracker is not None and tracker.state is not None  # the head fit's weights
    # the best error rate, a tie keeping the earlier candidate
    best = min((head, last, average), key=lambda r: r.error_rate)
    expected = {
        id(head): ("the head fit", tracker.state),
        id(last): ("epoch 2", logger.last),
        id(average): ("the average of the head fit and epoch 2",
                      average_weights(tracker.state, logger.last)),
    }[id(best)]  # fmt: skip
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


def test_average_false_keeps_the_best_epoch_as_before(folder: Path) -> None:
    learner = _learner(folder)
    table = learner.fine_tune(2, base_lr=1e-2, average=False)
    assert [r.phase for r in table] == ["head", "unfrozen", "unfrozen"]
    assert learner.kept in {"the head fit", "epoch 1", "epoch 2"}
