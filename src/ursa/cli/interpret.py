"""``ursa interpret``: the interpret stage's command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.options import DataOptions, data_options


@data_options(as_trained=True)
def interpret(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle.")],
    data: Annotated[Path, typer.Argument(help="The dataset folder (split as in training).")],
    options: DataOptions,
    split: Annotated[str, typer.Option(help="valid, train or all.")] = "valid",
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
    """Confusion matrix, most confused, top losses with heat maps, per-class metrics and a
    self-contained report.html (the model card) for BUNDLE on DATA."""
    from ursa.cli.support import console, shown
    from ursa.core.bundle import read_bundle
    from ursa.export.model import Model
    from ursa.interpret.interpretation import Interpretation
    from ursa.interpret.report import add_card_to_bundle

    model = Model(read_bundle(bundle))
    images = options.load_as_trained(data, model.config)  # flags given override the bundle's
    interp = Interpretation.from_bundle(model, images, split, batch_size=batch_size)
    files = interp.save(output, k=top_k, heatmap=heatmap)
    if write_card:
        add_card_to_bundle(bundle, files["report.html"].read_text(encoding="utf-8"))
        console.print(f"added card.html to {shown(bundle)}", soft_wrap=True)
    console.print(
        f"{interp.split}: {len(interp.targets)} images, accuracy {interp.accuracy:.4f}; wrote "
        + ", ".join(shown(path) for path in files.values()),
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``interpret`` to the ``ursa`` command."""
    from ursa.cli.support import user_errors

    app.command("interpret")(user_errors(interpret))
