"""``ursa interpret``: the interpret stage's command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ursa.cli.choices import InterpretSplit
from ursa.cli.options import DataOptions, data_options

if TYPE_CHECKING:
    from ursa.core.bundle import BundleConfig


@data_options(as_trained=True)
def interpret(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle.")],
    data: Annotated[Path, typer.Argument(help="The dataset folder (split as in training).")],
    options: DataOptions,
    split: Annotated[InterpretSplit, typer.Option(help="The images to interpret.")] = "valid",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the files.")] = Path(
        "report"
    ),
    top_k: Annotated[int, typer.Option(help="Images in top_losses.png.")] = 9,
    heatmap: Annotated[bool, typer.Option(help="Grad-CAM overlays on the top losses.")] = True,
    write_card: Annotated[
        bool, typer.Option("--write-card", help="Also add report.html to BUNDLE as card.html.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Images per model run.")] = 64,
) -> None:
    """Explain BUNDLE's mistakes on DATA and write its model card.

    The files: the confusion matrix, the most confused pairs, the top losses with heat
    maps, per-class metrics and a self-contained report.html (the model card). The
    images are read as the model was trained and is served: --size, --resize, --pad-mode
    and --input cannot change that.
    """
    from ursa.cli.checks import data_folder, output_folder
    from ursa.cli.support import console, shown
    from ursa.core.bundle import read_bundle

    data_folder(data)  # the quick checks first: loading the model takes seconds
    output_folder(output, "-o")
    contents = read_bundle(bundle)
    refuse_preprocessing_flags(options, contents.config)
    with console.status("loading the model") as status:
        from ursa.export.model import Model
        from ursa.interpret.interpretation import Interpretation
        from ursa.interpret.report import add_card_to_bundle

        model = Model(contents)
        images = options.load_as_trained(data, model.config)  # flags given override the bundle's
        status.update(f"predicting the {split} images of {shown(data)}")
        interp = Interpretation.from_bundle(model, images, split, batch_size=batch_size)
        status.update("drawing the figures" + (" and Grad-CAM heat maps" if heatmap else "")
                      + f" into {shown(output)}")  # fmt: skip
        files = interp.save(output, k=top_k, heatmap=heatmap)
    if write_card:
        add_card_to_bundle(bundle, files["report.html"].read_text(encoding="utf-8"))
        console.print(f"added card.html to {shown(bundle)}", soft_wrap=True)
    console.print(
        f"{interp.split}: {len(interp.targets)} images, accuracy {interp.accuracy:.4f}; wrote "
        + ", ".join(shown(path) for path in files.values()),
        soft_wrap=True,
    )


def refuse_preprocessing_flags(options: DataOptions, config: BundleConfig) -> None:
    """A model is interpreted on the inputs it predicts from everywhere else (serve,
    predict, export): a --size, --resize, --pad-mode or --input other than its own would
    not change them, so it is refused instead of ignored."""
    from ursa.core.errors import ConfigError

    recorded = config.preprocess
    flags = {
        "--size": (options.size, recorded.size),
        "--resize": (options.resize, recorded.resize),
        "--pad-mode": (options.pad_mode, recorded.pad_mode),
        "--input": (options.input, recorded.input.kind),
    }
    problems = [
        f"{flag} {given} (the model takes {own})"
        for flag, (given, own) in flags.items()
        if given is not None and given != own
    ]
    if problems:
        raise ConfigError(
            f"{'; '.join(problems)}: a model is interpreted on the inputs it was trained on and "
            f"predicts from; drop the flag, or train a model with it"
        )


def register(app: typer.Typer) -> None:
    """Add ``interpret`` to the ``ursa`` command."""
    from ursa.cli.support import user_errors

    app.command("interpret")(user_errors(interpret))
