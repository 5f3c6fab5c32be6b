"""How training reports progress: a small Protocol and its implementations.

The CLI plugs in a rich progress bar; a script gets plain text (:class:`PrintLogger`);
a Jupyter notebook gets a bar that updates in place above the epoch table
(:class:`NotebookLogger`). :func:`default_logger` picks between the last two.
"""

from __future__ import annotations

import html
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

from ursa.core.notebook import in_notebook
from ursa.data.core import html_table, text_table

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


def _cell(value: float) -> str:
    """A metric's cell; a dash where there is none (the averaged weights' training loss)."""
    return "—" if math.isnan(value) else f"{value:.4f}"


def format_row(record: EpochRecord) -> list[str]:
    """The table cells for one epoch, as strings."""
    minutes, seconds = divmod(round(record.seconds), 60)
    return [
        str(record.epoch),
        record.phase,
        *(_cell(value) for value in (record.train_loss, record.valid_loss)),
        *(_cell(value) for value in (record.error_rate, record.accuracy, record.macro_f1)),
        f"{minutes:02d}:{seconds:02d}",
    ]


class EpochTable(list[EpochRecord]):
    """The epochs a fit ran, as ``fine_tune`` and ``fit_one_cycle`` return them.

    A list of :class:`EpochRecord` (index it, loop over it, compare it with a list, as
    before) that shows as the epoch table: aligned text in a terminal, an HTML table
    in a notebook. Slicing or adding gives a plain list.
    """

    def __init__(self, records: Iterable[EpochRecord] = ()) -> None:
        super().__init__(records)

    def __repr__(self) -> str:
        if not self:
            return "EpochTable: no epochs (this fit had already finished in the resumed run)"
        return text_table(COLUMNS, [format_row(record) for record in self])

    def _repr_html_(self) -> str:
        return html_table(COLUMNS, [format_row(record) for record in self])


class TrainingLogger(Protocol):
    """Receives progress from :func:`ursa.train.loop.fit` and :meth:`Learner.fine_tune`.

    ``start_run`` and ``valid_step`` came later: a logger without them still works (the
    callers look them up), it just cannot tell the time the run or a validation has left.
    """

    def start_run(self, first_epoch: int, epochs: int) -> None:
        """A run of ``epochs`` epochs begins (``fine_tune``: the head fit or frozen epochs,
        then the unfrozen ones), numbered from ``first_epoch``; it may end sooner (early
        stopping). For the time the whole run has left."""

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        """An epoch of ``steps`` batches begins."""

    def step(self, step: int, loss: float) -> None:
        """Batch ``step`` (0-based) finished with training loss ``loss``."""

    def valid_step(self, step: int, steps: int) -> None:
        """Validation batch ``step`` (0-based) of ``steps`` finished: after the epoch's last
        training ``step``, before ``end_epoch``."""

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

    def start_run(self, first_epoch: int, epochs: int) -> None:
        pass

    def valid_step(self, step: int, steps: int) -> None:
        pass

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

    def start_run(self, first_epoch: int, epochs: int) -> None:
        pass

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        pass

    def step(self, step: int, loss: float) -> None:
        pass

    def valid_step(self, step: int, steps: int) -> None:
        pass

    def end_epoch(self, record: EpochRecord) -> None:
        pass

    def message(self, text: str, *, warning: bool = False) -> None:
        if warning:
            log.warning("%s", text)


def default_logger() -> TrainingLogger:
    """The logger a :class:`~ursa.train.Learner` reports to unless given one: the notebook's
    bar and table inside a Jupyter kernel, else the plain-text table."""
    return NotebookLogger() if in_notebook() else PrintLogger()


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class NotebookLogger:
    """Progress in a Jupyter notebook: a bar that moves within each epoch (steps done, time
    spent, time left in the epoch, the batch loss) and below it the epoch table, a row added
    as each epoch is validated; what training chose, and warnings, print as lines below.

    Both are IPython displays updated in place (``display(..., display_id=True)``, then
    ``update``), with a plain-text twin, rather than tqdm's widgets: nothing more to
    install, no warning, and the saved notebook keeps the last bar and the table. The bar
    is redrawn at most every ``every`` seconds. A new cell gets a new bar and table (a
    logger reused from an earlier cell does not rewrite that cell's output).
    """

    def __init__(self, *, every: float = 0.2, timer: Callable[[], float] = time.monotonic):
        self.every = every
        self.timer = timer
        self._bar: Any = None
        self._table: Any = None
        self._cell: object = None
        self._records: list[EpochRecord] = []
        self._epoch, self._phase, self._steps = 0, "", 0
        self._started = self._drawn = 0.0

    # -- the two displays -----------------------------------------------------------------

    def _displays(self) -> None:
        """Create the bar and the table under the running cell (once per cell)."""
        from IPython import get_ipython
        from IPython.display import display

        cell = getattr(get_ipython(), "execution_count", None)
        if self._bar is not None and cell == self._cell:
            return
        self._cell, self._records = cell, []
        self._bar = display(self._bar_data(0, None), raw=True, display_id=True)
        self._table = display(self._table_data(), raw=True, display_id=True)

    def _bar_data(self, done: int, loss: float | None) -> dict[str, str]:
        label = f"epoch {self._epoch} ({self._phase})"
        elapsed = self.timer() - self._started
        if self._steps == 0:  # the head fit or the average: no training batches to count
            doing = (
                "validating the average of the head fit's and the last epoch's weights"
                if self._phase == "average"
                else "fitting the head on the frozen body's features"
            )
            text = f"{label}: {doing}, {clock(elapsed)}"
            value = ""
        elif done >= self._steps:
            text = f"{label}: {done}/{self._steps}, {clock(elapsed)}, validating"
            value = f' value="{done}"'
        else:
            left = elapsed / done * (self._steps - done) if done else None
            eta = f", {clock(left)} left" if left is not None else ""
            text = f"{label}: {done}/{self._steps}, {clock(elapsed)} spent{eta}"
            value = f' value="{done}"'
        if loss is not None:
            text += f", loss {loss:.4f}"
        width = 30
        filled = round(width * done / self._steps) if self._steps else 0
        plain = f"[{'#' * filled}{'.' * (width - filled)}] {text}"
        bar = f'<progress{value} max="{max(self._steps, 1)}" style="width: 20em"></progress>'
        return {
            "text/plain": plain,
            "text/html": f"<div>{bar} <span>{html.escape(text)}</span></div>",
        }

    def _table_data(self) -> dict[str, str]:
        table = EpochTable(self._records)
        if not table:
            return {"text/plain": "", "text/html": ""}
        return {"text/plain": repr(table), "text/html": table._repr_html_()}

    # -- the TrainingLogger protocol --------------------------------------------------------

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        self._epoch, self._steps, self._phase = epoch, steps, phase
        self._started = self._drawn = self.timer()
        self._displays()
        self._bar.update(self._bar_data(0, None), raw=True)

    def step(self, step: int, loss: float) -> None:
        now = self.timer()
        if now - self._drawn < self.every and step + 1 < self._steps:
            return
        self._drawn = now
        self._bar.update(self._bar_data(step + 1, loss), raw=True)

    def start_run(self, first_epoch: int, epochs: int) -> None:
        pass  # the bar tells the epoch's time left; the run's is the terminal logger's for now

    def valid_step(self, step: int, steps: int) -> None:
        pass  # the bar says "validating" once the training batches are done

    def end_epoch(self, record: EpochRecord) -> None:
        self._displays()
        self._records.append(record)
        text = f"epoch {record.epoch} ({record.phase}) done in {clock(record.seconds)}"
        self._bar.update(
            {
                "text/plain": text,
                "text/html": f'<div><progress value="1" max="1" style="width: 20em"></progress>'
                f" <span>{html.escape(text)}</span></div>",
            },
            raw=True,
        )
        self._table.update(self._table_data(), raw=True)

    def message(self, text: str, *, warning: bool = False) -> None:
        print(f"warning: {text}" if warning else text, flush=True)
