"""Rich output and small glue for the CLI (kept out of cli.py so commands stay thin)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ursa.errors import UrsaError
from ursa.train.progress import COLUMNS, EpochRecord, format_row

if TYPE_CHECKING:
    from ursa.data.core import ImageData
    from ursa.demo import DemoResult
    from ursa.train.learner import Learner


class RichLogger:
    """The epoch table row by row, with a progress bar during each epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self._header_done = False

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        if not self._header_done:
            self.console.print("  ".join(f"{c:>10}" for c in COLUMNS), style="bold", soft_wrap=True)
            self._header_done = True
        self._progress = Progress(
            TextColumn(f"epoch {epoch} ({phase})"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps or None, loss="-")

    def step(self, step: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step + 1, loss=f"{loss:.4f}")

    def end_epoch(self, record: EpochRecord) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(
            "  ".join(f"{c:>10}" for c in format_row(record)), highlight=False, soft_wrap=True
        )


def print_skipped(console: Console, data: ImageData) -> None:
    """Summarise the data, then list the files it skipped, each with its reason."""
    console.print(data.summary(), highlight=False)
    skipped = data.skipped
    if not skipped:
        return
    console.print(f"[yellow]skipped {len(skipped)} unreadable file(s):[/]")
    for error in skipped:
        console.print(f"  {error.source}: {error.reason}", highlight=False, soft_wrap=True)


def train_folder(
    path: Path,
    *,
    epochs: int,
    freeze_epochs: int,
    lr: float,
    arch: str,
    size: int,
    resize: str,
    augment: str,
    valid_pct: float,
    seed: int,
    batch_size: int,
    workers: int | None,
    pretrained: bool,
    weights: Path | None,
    logger: RichLogger,
    on_data: Callable[[ImageData], object],
) -> tuple[ImageData, Learner]:
    """Load ``path``, fine-tune ``arch`` on it, return (data, learner)."""
    from ursa.data.core import ImageData
    from ursa.train.learner import Learner

    data = ImageData.from_folder(
        path, valid_pct=valid_pct, seed=seed, size=size, resize=resize,  # type: ignore[arg-type]
        batch_size=batch_size, augment=augment, num_workers=workers,
    )  # fmt: skip
    on_data(data)
    learner = Learner(
        data, arch=arch, pretrained=pretrained, weights=weights, seed=seed, logger=logger
    )
    learner.fine_tune(epochs, base_lr=lr, freeze_epochs=freeze_epochs)
    return data, learner


def predict_rows(bundle: Path, images: Sequence[Path], *, top_k: int) -> list[list[str]]:
    """[file, label, probability, top-k] per image; an unreadable file gets "error" and why."""
    from ursa.export.model import load

    model = load(bundle)
    rows = []
    for image in images:
        try:
            prediction = model.predict(image)
        except UrsaError as error:
            rows.append([str(image), "error", "", str(error)])
            continue
        top = ", ".join(f"{label} {p:.3f}" for label, p in prediction.top(top_k))
        rows.append([str(image), prediction.label, f"{prediction.probability:.4f}", top])
    return rows


def print_rows(console: Console, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines (header first) when piped."""
    if console.is_terminal:
        table = Table(*header)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for row in [list(header), *rows]:
        console.print("\t".join(row), highlight=False, soft_wrap=True, markup=False)


def demo_report(console: Console, result: DemoResult) -> None:
    """Print the held-back predictions and the validation error rate."""
    table = Table("held-back image", "true", "predicted", "probability")
    for path, truth, prediction in result.holdout:
        mark = "" if prediction.label == truth else " [red]✗[/]"
        table.add_row(path.name, truth, prediction.label + mark, f"{prediction.probability:.3f}")
    console.print(table)
    correct = sum(p.label == t for _, t, p in result.holdout)
    console.print(f"held-back images correct: {correct}/{len(result.holdout)}")
    console.print(f"bundle: {result.bundle}", soft_wrap=True)
    console.print(f"[bold]validation error rate: {result.error_rate:.4f}[/]")
