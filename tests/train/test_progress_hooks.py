"""fine_tune announces its run and fit reports each validation batch to the logger, so a
logger can tell the time left; a logger written before these hooks still works."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import Learner
from ursa.train.progress import EpochRecord, SilentLogger


class Recorder(SilentLogger):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def start_run(self, first_epoch: int, epochs: int) -> None:
        self.events.append(("run", first_epoch, epochs))

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        self.events.append(("epoch", epoch, phase))

    def valid_step(self, step: int, steps: int) -> None:
        self.events.append(("valid", step, steps))

    def end_epoch(self, record: EpochRecord) -> None:
        self.events.append(("end", record.epoch))


class OldLogger:
    """A logger of before the hooks: start_epoch, step and end_epoch only."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        pass

    def step(self, step: int, loss: float) -> None:
        pass

    def end_epoch(self, record: EpochRecord) -> None:
        self.rows.append(record.epoch)


def data(tmp_path: Path) -> ImageData:
    folder = make_class_folder(tmp_path / "colours", per_class=8)
    return ImageData.from_folder(folder, size=32, batch_size=4, num_workers=0, valid_pct=0.25)


def test_the_run_is_announced_and_every_validation_batch_reported(tmp_path: Path) -> None:
    images = data(tmp_path)
    logger = Recorder()
    learner = Learner(images, arch=TINY_ARCH, pretrained=False, logger=logger)
    learner.fine_tune(2, base_lr=1e-2)
    batches = -(-len(images.valid_items) // 4)  # validation batches of 4
    # the head fit and two unfrozen epochs (the average that follows is a validation only)
    assert logger.events[0] == ("run", 0, 3)
    for epoch, phase in enumerate(["head", "unfrozen", "unfrozen", "average"]):
        begin = logger.events.index(("epoch", epoch, phase))
        end = logger.events.index(("end", epoch))
        reported = [e for e in logger.events[begin:end] if e[0] == "valid"]
        assert reported == [("valid", step, batches) for step in range(batches)], epoch


def test_a_logger_without_the_hooks_still_trains(tmp_path: Path) -> None:
    logger = OldLogger()
    learner = Learner(data(tmp_path), arch=TINY_ARCH, pretrained=False, logger=logger)  # type: ignore[arg-type]
    learner.fine_tune(1, base_lr=1e-2)
    assert logger.rows == [0, 1, 2]
