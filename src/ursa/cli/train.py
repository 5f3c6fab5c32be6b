"""``ursa train``: fine-tune a pretrained backbone on a data folder and write a bundle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import typer

from ursa.cli.options import DataOptions, data_options
from ursa.cli.support import console, user_errors
from ursa.cli.train_options import train_options
from ursa.data.augment import AUGMENT_PRESETS
from ursa.train.config import TrainConfig


@data_options()
@train_options()
def train(
    path: Annotated[
        Path, typer.Argument(help="Data folder: a folder per class, unless --pattern/--csv.")
    ],
    options: DataOptions,
    settings: TrainConfig,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Bundle to write (.ursa), or a folder to write DATA.ursa into "
            "(default: DATA.ursa beside the data folder).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Unfrozen epochs after the head (default: chosen from the data's size)."),
    ] = None,
    head: Annotated[
        Literal["fit", "epochs"],
        typer.Option(
            help="fit: the head fitted on frozen features first; epochs: fastai's frozen epochs."
        ),
    ] = "fit",
    freeze_epochs: Annotated[
        int, typer.Option(help="With --head epochs: epochs training only the new head.")
    ] = 1,
    lr: Annotated[
        str, typer.Option(help="Base learning rate, or 'auto' to run lr-find after the head.")
    ] = "2e-3",
    augment: Annotated[
        str | None,
        typer.Option(
            help=f"Augmentation: {', '.join(AUGMENT_PRESETS)} (default: default for images, "
            "none for audio and bytes)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Images per batch (default: at least 16 steps an epoch, at most 64)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Loader processes (default: automatic).")
    ] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Write last.ckpt here after every epoch.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue from a checkpoint (file or checkpoint dir), same settings."),
    ] = None,
    keep_best: Annotated[
        bool,
        typer.Option(
            "--keep-best/--no-keep-best",
            help="End with the best validated weights (the head fit or an epoch); "
            "--no-keep-best ends with the last epoch's.",
        ),
    ] = True,
    average: Annotated[
        bool,
        typer.Option(
            "--average/--no-average",
            help="With --keep-best after the head fit: end with the average of the head "
            "fit's and the last epoch's weights unless the head fit validates better "
            "(from 10,000 training images the last epoch competes too); --no-average: the "
            "best validated of the head fit and every epoch.",
        ),
    ] = True,
    history_plot: Annotated[
        Path | None, typer.Option(help="Write the loss/accuracy history as a PNG.")
    ] = None,
) -> None:
    """Fine-tune a pretrained backbone on PATH and write a bundle."""
    from ursa.cli.checks import bundle_output, output_file, output_folder
    from ursa.cli.support import RichLogger, TrainRun, print_skipped, shown, train_folder

    output, chosen = bundle_output(output, path)  # before any slow step
    if history_plot is not None:
        output_file(history_plot, "--history-plot")
    if checkpoint_dir is not None:
        output_folder(checkpoint_dir, "--checkpoint-dir")
    if chosen is not None:
        console.print(shown(chosen), highlight=False, soft_wrap=True)
    run = TrainRun(
        epochs=epochs, head=head, freeze_epochs=freeze_epochs, lr=lr, augment=augment,
        batch_size=batch_size, workers=workers, checkpoint_dir=checkpoint_dir, resume=resume,
        keep_best=keep_best, average=average, history_plot=history_plot,
    )  # fmt: skip
    _, learner = train_folder(
        path, options, settings, run, logger=RichLogger(console),
        on_data=lambda d: print_skipped(console, d),
    )  # fmt: skip
    bundle = learner.export(output)
    if learner.is_main:  # under `accelerate launch`, one process reports
        error = learner.final_metrics.error_rate if learner.final_metrics else math.nan
        console.print(f"wrote {shown(bundle)} (error rate {error:.4f})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``ursa`` command."""
    app.command("train")(user_errors(train))
