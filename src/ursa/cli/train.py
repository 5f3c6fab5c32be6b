"""``ursa train``: fine-tune a pretrained backbone on a data folder and write a bundle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.options import DataOptions, data_options
from ursa.cli.support import console, user_errors


@data_options()
def train(
    path: Annotated[
        Path, typer.Argument(help="Data folder: a folder per class, unless --pattern/--csv.")
    ],
    options: DataOptions,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o",
            help="Bundle to write (.ursa), or a folder to write DATA.ursa into "
            "(default: DATA.ursa beside the data folder).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Unfrozen epochs after the head (default: chosen from the data's size)."),
    ] = None,
    head: Annotated[
        str,
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
    arch: Annotated[
        str, typer.Option(help="efficientnet_lite0/1/2 or a timm name.")
    ] = "efficientnet_lite0",
    augment: Annotated[
        str | None,
        typer.Option(help="default, no_flip or none (default: none for audio and bytes)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Images per batch (default: at least 16 steps an epoch, at most 64)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Loader processes (default: automatic).")
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from pretrained weights.")] = True,
    weights: Annotated[Path | None, typer.Option(help="Local pretrained weights file.")] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Write last.ckpt here after every epoch.")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue from a checkpoint (file or checkpoint dir).")
    ] = None,
    early_stop: Annotated[
        int | None, typer.Option(help="Stop after this many epochs without improvement.")
    ] = None,
    monitor: Annotated[
        str, typer.Option(help="valid_loss, error_rate, accuracy or macro_f1.")
    ] = "error_rate",
    keep_best: Annotated[
        bool,
        typer.Option(
            "--keep-best/--no-keep-best",
            help="End with the best validated weights (the head fit or an epoch); "
            "--no-keep-best ends with the last epoch's.",
        ),
    ] = True,
    accumulate: Annotated[int, typer.Option(help="Batches per optimizer step.")] = 1,
    clip: Annotated[float | None, typer.Option(help="Clip gradient norm to this.")] = None,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing, e.g. 0.1.")] = 0.0,
    balance: Annotated[
        str, typer.Option(help="Imbalanced classes: none, weights (loss) or sampler.")
    ] = "none",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16/fp16 on CUDA; bf16 on CPUs with bf16 instructions, else "
            "fp32), fp32, bf16, fp16."
        ),
    ] = "auto",
    history_plot: Annotated[
        Path | None, typer.Option(help="Write the loss/accuracy history as a PNG.")
    ] = None,
    train_bn: Annotated[
        bool, typer.Option(help="Train batch-norm layers while the body is frozen (fastai).")
    ] = True,
) -> None:
    """Fine-tune a pretrained backbone on PATH and write a bundle."""
    from ursa.cli.checks import bundle_output
    from ursa.cli.support import RichLogger, TrainExtras, print_skipped, shown, train_folder

    output, chosen = bundle_output(output, path)  # before any slow step
    if chosen is not None:
        console.print(shown(chosen), highlight=False, soft_wrap=True)
    extras = TrainExtras(
        checkpoint_dir=checkpoint_dir, resume=resume, early_stop=early_stop, monitor=monitor,
        keep_best=keep_best, accumulate=accumulate, clip=clip, label_smoothing=label_smoothing,
        balance=balance, precision=precision, history_plot=history_plot, train_bn=train_bn,
    )  # fmt: skip
    _, learner = train_folder(
        path, options, epochs=epochs, head=head, freeze_epochs=freeze_epochs, lr=lr, arch=arch,
        augment=augment, batch_size=batch_size, workers=workers, pretrained=pretrained,
        weights=weights, logger=RichLogger(console), on_data=lambda d: print_skipped(console, d),
        extras=extras,
    )  # fmt: skip
    bundle = learner.export(output)
    if learner.is_main:  # under `accelerate launch`, one process reports
        error = learner.final_metrics.error_rate if learner.final_metrics else math.nan
        console.print(f"wrote {shown(bundle)} (error rate {error:.4f})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``ursa`` command."""
    app.command("train")(user_errors(train))
