"""Rich output and small glue for the CLI (kept out of cli.py so commands stay thin)."""

from __future__ import annotations

import functools
import math
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ursa.core.errors import ConfigError, DataError, UrsaError

# No emoji codes: a file called ":smile:.jpg" is shown as it is named.
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Print an :class:`UrsaError` as one line and exit 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UrsaError as error:
            message = shown(error, keep_newlines=True)  # messages name files: escape them
            errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# Torch-free at import: `ursa serve`, `ursa predict` and every error message use this
# module where only `ursa[serve]` is installed (ursa.train's package imports torch).
if TYPE_CHECKING:
    from ursa.cli.options import DataOptions
    from ursa.core.sources import InputSource
    from ursa.data.core import DataSettings, ImageData
    from ursa.demo import DemoResult
    from ursa.export.deploy import ExportResult
    from ursa.serve.bench import BenchRow
    from ursa.train.config import TrainConfig
    from ursa.train.learner import Learner
    from ursa.train.lr_find import LRFindResult
    from ursa.train.progress import EpochRecord


#: Characters that reorder text on a terminal (bidirectional embeddings, overrides,
#: isolates and marks): a name could show as something else.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(char: str) -> str:
    """``char`` as Python writes it in a string literal: \\n, \\x1b, \\u202e, \\udcff."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    # Cc: C0/C1 controls and DEL (ESC starts terminal sequences); Cs: an undecodable
    # byte in a file name (printing it would raise); Zl/Zp: line breaks.
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI


def plain(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` as text that cannot drive a terminal: control characters, undecodable
    bytes and bidirectional overrides written as escapes (``\\x1b``, ``\\n``, ``\\udcff``).
    ``keep_newlines`` keeps line breaks (for ursa's own multi-line messages)."""
    text = str(value)
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(
        _escaped(char) if _unsafe(char) and not (keep_newlines and char == "\n") else char
        for char in text
    )


def shown(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` (a file or class name, a message holding them) made safe to put in rich
    output: :func:`plain`, then rich markup escaped, so ``[/nope]`` shows as written.

    Every name the CLI prints goes through this (or :func:`tsv_field` when piped)."""
    return escape(plain(value, keep_newlines=keep_newlines))


def tsv_field(value: object) -> str:
    """``value`` as one tab-separated field: backslash, tab, newline, carriage return and
    other control characters escaped (``\\\\``, ``\\t``, ``\\n``, ``\\r``, ``\\x1b``), so a
    file name can never split a row or a column."""
    return plain(str(value).replace("\\", "\\\\"))


class RunClock:
    """How long the epoch and the whole run have left, from the training hooks' timings.

    Training time is projected from the batches done; validation from the validation
    batches done, or before it starts from the last validation's duration (the head fit's
    validation gives the first). The run's later epochs are taken to last as long as this
    one (during the head fit, whose time says nothing of an epoch's, the run's is not
    told). Times are passed in (``now``), so the arithmetic can be checked by itself.
    """

    def __init__(self) -> None:
        self.last_epoch: int | None = None
        """The run's last epoch number (None: no run announced, this epoch is all)."""
        self.valid_seconds: float | None = None
        """How long the last validation took (or would have, timed from its batches)."""
        self.epoch = self.steps = self.done = self.valid_done = self.valid_steps = 0
        self.started = 0.0
        # Validation is timed from `origin`, when `origin_done` of its batches were done: the
        # end of the last training batch (0 done), or without training batches (the head
        # fit) the end of the first validation batch (1 done).
        self.origin: float | None = None
        self.origin_done = 0

    def start_run(self, first_epoch: int, epochs: int) -> None:
        self.last_epoch = first_epoch + epochs - 1

    def start_epoch(self, epoch: int, steps: int, now: float) -> None:
        self.epoch, self.steps, self.started = epoch, steps, now
        self.done = self.valid_done = self.valid_steps = self.origin_done = 0
        self.origin = None

    def step(self, done: int, now: float) -> None:
        self.done = done
        if self.steps and done >= self.steps:
            self.origin, self.origin_done = now, 0

    def valid_step(self, done: int, steps: int, now: float) -> None:
        if self.origin is None:
            self.origin, self.origin_done = now, done
        self.valid_done, self.valid_steps = done, steps

    def _per_valid_batch(self, now: float) -> float | None:
        if self.origin is None or self.valid_done <= self.origin_done:
            return None
        return (now - self.origin) / (self.valid_done - self.origin_done)

    def end_epoch(self, now: float) -> None:
        per_batch = self._per_valid_batch(now)
        if per_batch is not None:
            self.valid_seconds = per_batch * self.valid_steps

    def left(self, now: float) -> tuple[float | None, float | None, bool]:
        """(seconds the epoch has left, the run's, whether the epoch's validation is
        counted in); None where nothing can be told yet."""
        elapsed = now - self.started
        if self.valid_done:
            per_batch = self._per_valid_batch(now)
            if per_batch is None:
                return None, None, False
            epoch_left = per_batch * max(self.valid_steps - self.valid_done, 0)
            counted = True
        elif self.steps and self.done:
            epoch_left = elapsed / self.done * (self.steps - self.done)
            counted = self.valid_seconds is not None
            epoch_left += self.valid_seconds or 0.0
        else:
            return None, None, False
        if self.last_epoch is None or self.last_epoch < self.epoch or not self.steps:
            return epoch_left, None, counted
        later = self.last_epoch - self.epoch
        return epoch_left, epoch_left + later * (elapsed + epoch_left), counted


class RichLogger:
    """The epoch table row by row; on a terminal, a bar for each epoch's training batches
    and then its validation batches, with the time the epoch and the whole run have left
    (:class:`RunClock`)."""

    def __init__(self, console: Console, *, timer: Callable[[], float] | None = None) -> None:
        import time

        self.console = console
        self.timer = timer or time.monotonic
        self.clock = RunClock()
        self._progress: Progress | None = None
        self._task: Any = None
        self._label = ""
        self._header_done = False

    def start_run(self, first_epoch: int, epochs: int) -> None:
        self.clock.start_run(first_epoch, epochs)

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        if not self._header_done:
            from ursa.train.progress import COLUMNS

            self.console.print("  ".join(f"{c:>10}" for c in COLUMNS), style="bold", soft_wrap=True)
            self._header_done = True
        self.clock.start_epoch(epoch, steps, self.timer())
        self._label = f"epoch {epoch} ({phase})"
        doing = {
            "head": ": fitting the head on the frozen body's features",
            "average": ": validating the average of the head fit's and the last epoch's weights",
        }.get(phase, "")
        if not self.console.is_terminal:
            return  # piped or logged: the rows alone, no bar to redraw
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self._label + doing, total=steps or None, loss="", eta=""
        )

    def step(self, step: int, loss: float) -> None:
        now = self.timer()
        self.clock.step(step + 1, now)
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step + 1, loss=f"loss {loss:.4f}", eta=self.eta(now)
            )

    def valid_step(self, step: int, steps: int) -> None:
        now = self.timer()
        self.clock.valid_step(step + 1, steps, now)
        if self._progress is not None:
            self._progress.update(
                self._task, description=f"{self._label} validating", completed=step + 1,
                total=steps or None, eta=self.eta(now),
            )  # fmt: skip

    def eta(self, now: float | None = None) -> str:
        """What the bar says is left: ``epoch 00:12 left, run ~03:40 left``; ``+ validation``
        while the epoch's validation time is not known yet."""
        from ursa.train.progress import clock

        epoch, run, counted = self.clock.left(self.timer() if now is None else now)
        if epoch is None:
            return ""
        text = f"epoch {clock(epoch)} left" + ("" if counted else " + validation")
        return text + (f", run ~{clock(run)} left" if run is not None else "")

    def end_epoch(self, record: EpochRecord) -> None:
        from ursa.train.progress import format_row

        self.clock.end_epoch(self.timer())
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(
            "  ".join(f"{c:>10}" for c in format_row(record)), highlight=False, soft_wrap=True
        )

    def message(self, text: str, *, warning: bool = False) -> None:
        style = "yellow" if warning else None
        prefix = "warning: " if warning else ""
        self.console.print(
            f"{prefix}{plain(text, keep_newlines=True)}", style=style, markup=False,
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def print_skipped(console: Console, data: ImageData) -> None:
    """Summarise the data, then list the files it skipped, each with its reason."""
    console.print(shown(data.summary(), keep_newlines=True), highlight=False, soft_wrap=True)
    skipped = data.skipped
    if not skipped:
        return
    console.print(f"[yellow]skipped {len(skipped)} unreadable file(s):[/]")
    for error in skipped:
        console.print(
            f"  {shown(error.source)}: {shown(error.reason)}", highlight=False, soft_wrap=True
        )


@dataclass(frozen=True)
class TrainRun:
    """``ursa train``'s options that are not training settings: the schedule, the loader,
    checkpoints and plots (the settings are the :class:`~ursa.train.config.TrainConfig`)."""

    epochs: int | None = None
    head: str = "fit"
    freeze_epochs: int = 1
    lr: str | float = "2e-3"
    augment: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    checkpoint_dir: Path | None = None
    resume: Path | None = None
    keep_best: bool = True
    average: bool = True
    history_plot: Path | None = None


def parse_lr(lr: str) -> float | None:
    """``--lr``: a positive number, or ``auto`` (None: find it with lr-find)."""
    if lr.strip().lower() == "auto":
        return None
    try:
        value = float(lr)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"--lr {lr}: use a positive learning rate such as 2e-3, or auto")
    return value


def train_folder(
    path: Path,
    options: DataOptions,
    settings: TrainConfig,
    run: TrainRun,
    *,
    logger: RichLogger,
    on_data: Callable[[ImageData], object],
) -> tuple[ImageData, Learner]:
    """Load ``path`` as the data ``options`` say, fine-tune with ``settings`` as ``run``
    says, return (data, learner).

    ``run.lr="auto"`` runs the learning-rate finder after the head phase (``fine_tune``
    with ``base_lr=None``); when resuming, the rate of the interrupted run is reused.
    """
    from ursa.train.distributed import is_main_process
    from ursa.train.learner import Learner

    base_lr = parse_lr(run.lr) if isinstance(run.lr, str) else run.lr
    if run.head not in ("fit", "epochs"):
        raise ConfigError(f"--head {run.head}: use fit (the head fitted first) or epochs")
    base: DataSettings = {"batch_size": run.batch_size, "num_workers": run.workers}
    if run.augment is not None:
        base["augment"] = run.augment
    data = options.load(path, **base)
    if is_main_process():
        on_data(data)
    if settings.run.seed is None:
        settings = settings.replace(seed=options.seed_or_default)
    # --keep-best is both every fit's rule and fine_tune's choice of the final weights.
    settings = settings.replace(keep_best=run.keep_best)
    learner = Learner(data, config=settings, logger=logger, checkpoint_dir=run.checkpoint_dir)
    if run.resume is not None:
        learner.resume(run.resume)
    learner.fine_tune(
        run.epochs,
        base_lr=base_lr,
        freeze_epochs=run.freeze_epochs,
        head=run.head,  # type: ignore[arg-type]
        keep_best=run.keep_best,
        average=run.average,
    )
    if run.history_plot is not None and learner.is_main:
        learner.plot_history(run.history_plot)
    return data, learner


def find_lr(
    path: Path, options: DataOptions, settings: TrainConfig, *, batch_size: int | None,
    plot: Path,
) -> tuple[LRFindResult, Path]:  # fmt: skip
    """The learning-rate finder on ``path`` (:meth:`Learner.lr_find`), plot written."""
    from ursa.train.learner import Learner
    from ursa.train.progress import SilentLogger

    data = options.load(path, batch_size=batch_size)
    if settings.run.seed is None:
        settings = settings.replace(seed=options.seed_or_default)
    learner = Learner(data, config=settings, logger=SilentLogger())
    result = learner.lr_find()
    result.plot(plot)
    return result, plot


def expand_images(arguments: Sequence[str], source: InputSource | None = None) -> list[Path]:
    """Files as given, folders searched recursively for the files ``source`` reads (a
    bundle's input: images, audio clips, ...; default images), glob patterns expanded.

    A file named explicitly is kept even when it is not an image (its row says why).
    """
    import glob

    from ursa.core.sources import IMAGE_INPUT

    reader = source or IMAGE_INPUT
    files: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and reader.matches(p))
        elif path.exists() or not glob.has_magic(argument):
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(argument, recursive=True))
            found = [p for p in found if p.is_file() and reader.matches(p)]
        if not found:
            raise DataError(f"{argument}: no {reader.kind} files match")
        files += found
    return files


@dataclass(frozen=True)
class PredictRow:
    """One file's answer from ``ursa predict``: a prediction, or why the file was unreadable.

    The error is a field of its own: class names are data (a class may be called
    ``error``), never markers."""

    path: str
    label: str = ""
    probability: str = ""
    top: str = ""
    error: str | None = None

    def cells(self) -> list[str]:
        """The row of the terminal table / TSV: file, label, probability, top-k."""
        if self.error is not None:
            return [self.path, "", "", f"unreadable: {self.error}"]
        return [self.path, self.label, self.probability, self.top]


def predict_rows(
    bundle: Path,
    images: Sequence[Path],
    *,
    top_k: int,
    batch_size: int = 32,
    console: Console | None = None,
) -> list[PredictRow]:
    """One :class:`PredictRow` per image; an unreadable file gets its error, not a crash.

    Images are decoded in threads and run through the model ``batch_size`` at a
    time; a progress bar shows on ``console`` when there are many.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from ursa.core.prediction import predictions_from_logits
    from ursa.core.preprocess import prepare_input
    from ursa.export.model import load

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: use 1 or more")
    model = load(bundle)
    config = model.config.preprocess

    def prepare(path: Path) -> np.ndarray | UrsaError:
        try:
            return prepare_input(path, config)
        except UrsaError as error:
            return error

    rows: list[PredictRow] = []
    show = console is not None and len(images) > batch_size
    progress = Progress(
        TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not show,
    )  # fmt: skip
    with progress, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        task = progress.add_task("predict", total=len(images))
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            prepared = list(pool.map(prepare, chunk))
            good = [a for a in prepared if not isinstance(a, UrsaError)]
            answers = iter(
                predictions_from_logits(model.logits(np.stack(good)), model.class_names)
                if good
                else []
            )
            for path, item in zip(chunk, prepared, strict=True):
                if isinstance(item, UrsaError):
                    rows.append(PredictRow(str(path), error=str(item)))
                    continue
                prediction = next(answers)
                top = ", ".join(f"{label} {p:.3f}" for label, p in prediction.top(top_k))
                rows.append(
                    PredictRow(str(path), prediction.label, f"{prediction.probability:.4f}", top)
                )
            progress.update(task, advance=len(chunk))
    return rows


def write_csv(console: Console, path: Path, rows: Sequence[PredictRow]) -> None:
    """Write predictions as CSV (path, label, probability, top_k, error), atomically."""
    import csv

    from ursa.core.atomic import atomic_file

    with atomic_file(path, text=True) as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label", "probability", "top_k", "error"])
        for row in rows:
            writer.writerow([row.path, row.label, row.probability, row.top, row.error or ""])
    errors = sum(row.error is not None for row in rows)
    console.print(
        f"wrote {len(rows)} rows to {shown(path)} ({errors} unreadable file(s))", soft_wrap=True
    )


def print_rows(console: Console, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines (header first) when piped.

    Cells may hold names from a dataset or a bundle: on the terminal they are shown
    escaped (:func:`shown`), in the TSV each is one field (:func:`tsv_field`).
    """
    if console.is_terminal:
        table = Table(*map(shown, header))
        for row in rows:
            table.add_row(*map(shown, row))
        console.print(table)
        return
    # Straight to the file: Console.print would expand the tabs into spaces.
    for row in [list(header), *rows]:
        console.file.write("\t".join(map(tsv_field, row)) + "\n")


def demo_report(console: Console, result: DemoResult) -> None:
    """Print the held-back predictions and the validation error rate."""
    table = Table("held-back image", "true", "predicted", "probability")
    for path, truth, prediction in result.holdout:
        mark = "" if prediction.label == truth else " [red]✗[/]"
        table.add_row(
            shown(path.name), shown(truth), shown(prediction.label) + mark,
            f"{prediction.probability:.3f}",
        )  # fmt: skip
    console.print(table)
    correct = sum(p.label == t for _, t, p in result.holdout)
    console.print(f"held-back images correct: {correct}/{len(result.holdout)}")
    console.print(f"bundle: {shown(result.bundle)}", soft_wrap=True)
    console.print(f"[bold]validation error rate: {result.error_rate:.4f}[/]")


def export_report(console: Console, result: ExportResult) -> None:
    """What ``ursa export`` added, with the parity and accuracy numbers."""
    if result.parity is not None:
        parity = result.parity
        console.print(
            f"model.onnx: parity on {parity.images} images, max |onnx - torch| "
            f"{parity.max_abs_diff:.2g}, top-1 agrees on {parity.top1_agree}/{parity.images} "
            f"(tolerance: {parity.tolerance})",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    if result.int8 is not None:  # the method shipped, the gate's numbers, the model time
        for line in result.int8.lines():
            console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wrote {shown(result.bundle)}", soft_wrap=True)


def print_bench(console: Console, rows: Sequence[BenchRow]) -> None:
    """The benchmark as a table (tab-separated when piped)."""
    header = ["mode", "precision", "concurrency", "requests", "p50 ms", "p90 ms", "p99 ms"]
    print_rows(
        console,
        [*header, "images/s"],
        [
            [r.mode, r.precision, str(r.concurrency), str(r.requests), f"{r.p50_ms:.2f}",
             f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.images_per_s:.1f}"]
            for r in rows
        ],
    )  # fmt: skip


class progress_bar:
    """A rich progress bar as a context manager yielding (progress, task)."""

    def __init__(self, console: Console, label: str, total: int) -> None:
        self.progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        )  # fmt: skip
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self) -> tuple[Progress, TaskID]:
        self.progress.start()
        return self.progress, self.task

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
