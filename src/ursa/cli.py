"""The ``ursa`` command: thin subcommands over the library."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ursa.cli_data_options import DataOptions, data_options

# The console and the error wrapper live in cli_support, which the command modules import
# them from (importing them from here, the module that registers those, was a cycle).
from ursa.cli_support import console, user_errors
from ursa.version import __version__

app = typer.Typer(
    name="ursa",
    help="From a folder of photos to a fine-tuned image classifier, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"ursa {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """From a folder of photos to a fine-tuned image classifier, offline."""


@app.command()
@user_errors
@data_options()
def train(
    path: Annotated[
        Path, typer.Argument(help="Data folder: a folder per class, unless --pattern/--csv.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle to write (.ursa).")],
    options: DataOptions,
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
    from ursa.cli_support import RichLogger, TrainExtras, print_skipped, shown, train_folder

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


@app.command()
@user_errors
def predict(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle.")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    top_k: Annotated[int, typer.Option(help="Classes to show per image.")] = 3,
    out: Annotated[Path | None, typer.Option(help="Write a CSV here instead of a table.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per model run.")] = 32,
) -> None:
    """Predict the class of each image; unreadable files get an error row, not a crash."""
    from ursa.cli_support import expand_images, predict_rows, print_rows, write_csv
    from ursa.export.bundle import read_bundle

    files = expand_images(images, read_bundle(bundle).config.preprocess.input)
    rows = predict_rows(bundle, files, top_k=top_k, batch_size=batch_size, console=console)
    if out is None:
        print_rows(
            console, ["file", "label", "probability", f"top {top_k}"], [r.cells() for r in rows]
        )
    else:
        write_csv(console, out, rows)
    if any(row.error is not None for row in rows):
        raise typer.Exit(1)


@app.command()
@user_errors
def demo(
    folder: Annotated[Path, typer.Option(help="Where to write the digits and the bundle.")] = Path(
        "demo-output"
    ),
    epochs: Annotated[int, typer.Option(help="Unfrozen epochs.")] = 8,
    size: Annotated[int, typer.Option(help="Input side in pixels.")] = 96,
) -> None:
    """Fine-tune on scikit-learn's handwritten digits, export, and predict held-back images."""
    from ursa.cli_support import RichLogger, demo_report, shown
    from ursa.demo import run_demo

    console.print(
        f"writing scikit-learn's digits to {shown(folder)}/ and fine-tuning efficientnet_lite0"
    )
    result = run_demo(folder, epochs=epochs, size=size, logger=RichLogger(console))
    demo_report(console, result)


# Stage command modules register themselves here: each has `register(app)`.
# stage commands: begin
from ursa.cli_serve import register as _register_serve  # noqa: E402

_register_serve(app)
from ursa.cli_data import register as _register_data  # noqa: E402

_register_data(app)
from ursa.cli_interpret import register as _register_interpret  # noqa: E402

_register_interpret(app)
from ursa.cli_train import register as _register_train  # noqa: E402

_register_train(app)
from ursa.cli_clean import register as _register_clean  # noqa: E402

_register_clean(app)
from ursa.cli_show import register as _register_show  # noqa: E402

_register_show(app)
# stage commands: end


def main() -> None:
    """Entry point of the ``ursa`` script."""
    app(prog_name="ursa")


if __name__ == "__main__":  # pragma: no cover
    main()
