"""How training reports progress: a small Protocol, and a plain-text implementation.

The CLI plugs in a rich progress bar; a notebook or a script gets plain text.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    """One row of the epoch table."""

    epoch: int
    phase: str
    train_loss: float
    valid_loss: float
    error_rate: float
    accuracy: float
    seconds: float
    macro_f1: float = math.nan
    """Unweighted mean F1 over the classes (see :class:`ursa.train.metrics.Metrics`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = (
    "epoch", "phase", "train_loss", "valid_loss", "error_rate", "accuracy", "macro_f1", "time",
)  # fmt: skip


def format_row(record: EpochRecord) -> list[str]:
    """The table cells for one epoch, as strings."""
    minutes, seconds = divmod(round(record.seconds), 60)
    return [
        str(record.epoch),
        record.phase,
        f"{record.train_loss:.4f}",
        f"{record.valid_loss:.4f}",
        f"{record.error_rate:.4f}",
        f"{record.accuracy:.4f}",
        f"{record.macro_f1:.4f}",
        f"{minutes:02d}:{seconds:02d}",
    ]


class TrainingLogger(Protocol):
    """Receives progress from :func:`ursa.train.loop.fit`."""

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        """An epoch of ``steps`` batches begins."""

    def step(self, step: int, loss: float) -> None:
        """Batch ``step`` (0-based) finished with training loss ``loss``."""

    def end_epoch(self, record: EpochRecord) -> None:
        """The epoch finished and was validated."""

    def message(self, text: str, *, warning: bool = False) -> None:
        """A line for the user: what training chose, or a ``warning`` about the result."""


class PrintLogger:
    """Prints the epoch table as plain text; a one-line progress bar when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, *, progress: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._header_done = False
        self._steps = 0

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        if not self._header_done:
            print("  ".join(f"{c:>10}" for c in COLUMNS), file=self.stream, flush=True)
            self._header_done = True
        self._steps = steps

    def step(self, step: int, loss: float) -> None:
        if self.progress and self._steps:
            done = (step + 1) / self._steps
            bar = "#" * int(done * 30)
            print(
                f"\r[{bar:<30}] {step + 1}/{self._steps} loss {loss:.4f}", end="", file=sys.stderr
            )

    def end_epoch(self, record: EpochRecord) -> None:
        if self.progress:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
        print("  ".join(f"{c:>10}" for c in format_row(record)), file=self.stream, flush=True)

    def message(self, text: str, *, warning: bool = False) -> None:
        print(f"warning: {text}" if warning else text, file=self.stream, flush=True)


class SilentLogger:
    """Reports nothing (tests, library use inside other tools); warnings still reach
    :mod:`logging`."""

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        pass

    def step(self, step: int, loss: float) -> None:
        pass

    def end_epoch(self, record: EpochRecord) -> None:
        pass

    def message(self, text: str, *, warning: bool = False) -> None:
        if warning:
            log.warning("%s", text)
