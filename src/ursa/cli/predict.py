"""``ursa predict``: the class of each image, as a table or a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.support import console, user_errors


def predict(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle.")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    top_k: Annotated[int, typer.Option(help="Classes to show per image.")] = 3,
    out: Annotated[Path | None, typer.Option(help="Write a CSV here instead of a table.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per model run.")] = 32,
) -> None:
    """Predict the class of each image, as a table or a CSV.

    Unreadable files get an error row, not a crash.
    """
    from ursa.cli.checks import output_file
    from ursa.cli.support import expand_images, predict_rows, print_rows, write_csv
    from ursa.core.bundle import read_bundle

    if out is not None:
        output_file(out, "--out")  # before predicting
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


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the ``ursa`` command."""
    app.command("predict")(user_errors(predict))
