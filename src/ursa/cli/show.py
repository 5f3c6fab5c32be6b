"""``ursa show``: a batch grid and an augmentation preview of a dataset, as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.choices import Augment, ShowSplit
from ursa.cli.options import DataOptions, data_options


@data_options()
def show(
    path: Annotated[Path, typer.Argument(help="The data folder.")],
    options: DataOptions,
    out: Annotated[Path, typer.Option(help="Folder for batch.png and augment.png.")] = Path("."),
    n: Annotated[int, typer.Option("--n", help="Images in batch.png.")] = 16,
    split: Annotated[ShowSplit, typer.Option(help="The images of batch.png.")] = "train",
    draws: Annotated[int, typer.Option(help="Augmented copies in augment.png.")] = 8,
    image: Annotated[
        Path | None,
        typer.Option(help="The file augment.png shows (default: the first training one)."),
    ] = None,
    augment: Annotated[
        Augment | None,
        typer.Option(help="Augmentation (default: as ursa train: none for audio and bytes)."),
    ] = None,
) -> None:
    """Draw a batch and an augmentation preview as PNG files.

    batch.png: labelled images as training sees them (augmented for train, un-normalised);
    augment.png: one image under several draws of the training augmentation, the one
    `ursa train` uses for this input unless --augment says otherwise.
    """
    from ursa.cli.checks import output_folder
    from ursa.cli.support import console, print_skipped, shown

    output_folder(out, "--out")
    data = options.load(path) if augment is None else options.load(path, augment=augment)
    print_skipped(console, data)
    batch = out / "batch.png"
    data.show_batch(n=n, split=split, path=batch)
    preview = out / "augment.png"
    data.show_augmentations(image=image, n=draws, path=preview)
    console.print(
        f"wrote {shown(batch)} and {shown(preview)} (augment={data.config.augment_name})",
        soft_wrap=True, highlight=False,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``show`` to the ``ursa`` command."""
    from ursa.cli.support import user_errors

    app.command("show")(user_errors(show))
