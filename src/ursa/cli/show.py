"""``ursa show``: a batch grid and an augmentation preview of a dataset, as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.options import DataOptions, data_options


@data_options()
def show(
    path: Annotated[Path, typer.Argument(help="The data folder.")],
    options: DataOptions,
    out: Annotated[Path, typer.Option(help="Folder for batch.png and augment.png.")] = Path("."),
    n: Annotated[int, typer.Option("--n", help="Images in batch.png.")] = 16,
    split: Annotated[str, typer.Option(help="Images for batch.png: train or valid.")] = "train",
    draws: Annotated[int, typer.Option(help="Augmented copies in augment.png.")] = 8,
    image: Annotated[
        Path | None,
        typer.Option(help="The file augment.png shows (default: the first training one)."),
    ] = None,
    augment: Annotated[str, typer.Option(help="default, no_flip or none.")] = "default",
) -> None:
    """Write batch.png (labelled images as training sees them: augmented for train,
    un-normalised) and augment.png (one image under several augmentation draws)."""
    from ursa.cli.support import console, print_skipped, shown

    data = options.load(path, augment=augment)
    print_skipped(console, data)
    batch = out / "batch.png"
    data.show_batch(n=n, split=split, path=batch)
    data.show_augmentations(image=image, n=draws, path=out / "augment.png")
    console.print(
        f"wrote {shown(batch)} and {shown(out / 'augment.png')}", soft_wrap=True, highlight=False
    )


def register(app: typer.Typer) -> None:
    """Add ``show`` to the ``ursa`` command."""
    from ursa.cli.support import user_errors

    app.command("show")(user_errors(show))
