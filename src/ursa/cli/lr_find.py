"""`ursa lr-find`: the learning-rate finder from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.options import DataOptions, data_options
from ursa.cli.support import console, user_errors
from ursa.cli.train_options import train_options
from ursa.train.config import TrainConfig


@data_options()
# The sweep is one pass: no epochs to stop early on or to monitor.
@train_options(exclude=("patience", "monitor"))
def lr_find(
    path: Annotated[Path, typer.Argument(help="Data folder: a folder per class, unless --csv.")],
    options: DataOptions,
    settings: TrainConfig,
    plot: Annotated[Path, typer.Option(help="Where to write the loss-vs-rate PNG.")] = Path(
        "lr_find.png"
    ),
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch (default: as ursa train chooses).")
    ] = None,
) -> None:
    """Find a learning rate for ursa train and plot the sweep.

    Sweeps the rate of fine-tuning's unfrozen phase (after the head fit, as `ursa train
    --lr auto` does) over one pass of PATH; prints the suggestion, writes the plot.
    """
    from ursa.cli.checks import output_file
    from ursa.cli.support import find_lr, shown

    output_file(plot, "--plot")  # before the sweep
    result, written = find_lr(path, options, settings, batch_size=batch_size, plot=plot)
    console.print(f"suggested learning rate (valley): {result.suggestion:.2e}", highlight=False)
    console.print(
        f"steepest descent {result.steepest:.2e}, minimum/10 {result.minimum:.2e}; "
        f"{len(result.lrs)} steps{', stopped at divergence' if result.diverged else ''}",
        highlight=False,
    )
    if result.unusable is not None:
        console.print(
            f"[yellow]this curve cannot be trusted ({result.unusable}): ursa train --lr auto "
            f"would keep the default 2e-3[/]", highlight=False, soft_wrap=True,
        )  # fmt: skip
    console.print(f"plot: {shown(written)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `lr-find` to the ``ursa`` command."""
    app.command("lr-find")(user_errors(lr_find))
