"""The terminal's training bar: the time the epoch and the whole run have left, the
validation included, and a bar during validation."""

from __future__ import annotations

import io
import math

from rich.console import Console

from ursa.cli.support import RichLogger
from ursa.train.progress import EpochRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(epoch: int, phase: str) -> EpochRecord:
    return EpochRecord(epoch, phase, 0.5, 0.6, 0.2, 0.8, 1.0, math.nan)


def test_the_eta_counts_validation_and_the_epochs_still_to_come() -> None:
    clock = Clock()
    logger = RichLogger(Console(file=io.StringIO()), timer=clock)
    logger.start_run(0, 3)  # the head fit, then two unfrozen epochs
    logger.start_epoch(0, 0, "head")
    assert logger.eta() == ""  # fitting the head: nothing to project from
    clock.now += 3
    logger.valid_step(0, 2)
    clock.now += 1
    logger.valid_step(1, 2)  # the head fit's validation: 2 batches, 2 s
    logger.end_epoch(record(0, "head"))

    logger.start_epoch(1, 10, "unfrozen")
    for step in range(4):
        clock.now += 1
        logger.step(step, 0.5)
    # 4 of 10 batches in 4 s: 6 s of training and 2 s of validation left; one epoch after.
    assert logger.eta() == "epoch 00:08 left, run ~00:20 left"
    for step in range(4, 10):
        clock.now += 1
        logger.step(step, 0.5)
    clock.now += 3
    logger.valid_step(0, 2)  # validation is slower this time: 3 s a batch
    assert logger.eta() == "epoch 00:03 left, run ~00:19 left"  # 3 + (13 + 3)
    clock.now += 3
    logger.valid_step(1, 2)
    logger.end_epoch(record(1, "unfrozen"))

    logger.start_epoch(2, 10, "unfrozen")
    clock.now += 2
    logger.step(0, 0.5)
    # 2 s a batch, 9 left, and the last validation's 6 s; the run ends with this epoch.
    assert logger.eta() == "epoch 00:24 left, run ~00:24 left"


def test_before_any_validation_was_timed_the_eta_says_so() -> None:
    clock = Clock()
    logger = RichLogger(Console(file=io.StringIO()), timer=clock)
    logger.start_epoch(0, 4, "frozen")  # no run announced: this epoch is all that is known
    clock.now += 5
    logger.step(0, 0.9)
    assert logger.eta() == "epoch 00:15 left + validation"


def test_the_bar_shows_the_eta_and_the_validation_batches() -> None:
    clock = Clock()
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=200, color_system=None)
    logger = RichLogger(console, timer=clock)
    logger.start_run(0, 2)
    logger.start_epoch(0, 4, "unfrozen")
    for step in range(4):
        clock.now += 1
        logger.step(step, 0.25)
    clock.now += 1
    logger.valid_step(0, 3)
    logger.end_epoch(record(0, "unfrozen"))  # the bar's last frame is drawn as it stops
    text = stream.getvalue()
    assert "epoch 0 (unfrozen) validating" in text
    assert "1/3" in text and "loss 0.2500" in text
    assert "epoch 00:02 left, run ~00:09 left" in text  # 2 batches at 1 s; then 7 s more
    assert "0.8000" in text  # and the epoch's row
