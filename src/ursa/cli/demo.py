"""``ursa demo``: the whole workflow on scikit-learn's digits, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.support import console, user_errors


def demo(
    folder: Annotated[Path, typer.Option(help="Where to write the digits and the bundle.")] = Path(
        "demo-output"
    ),
    epochs: Annotated[int, typer.Option(help="Unfrozen epochs.")] = 8,
    size: Annotated[int, typer.Option(help="Input side in pixels.")] = 96,
) -> None:
    """Run the whole workflow on scikit-learn's digits.

    Fine-tune on the handwritten digits, export, and predict held-back images.
    """
    from ursa.cli.support import RichLogger, demo_report, shown
    from ursa.demo import run_demo

    console.print(
        f"writing scikit-learn's digits to {shown(folder)}/ and fine-tuning efficientnet_lite0"
    )
    result = run_demo(folder, epochs=epochs, size=size, logger=RichLogger(console))
    demo_report(console, result)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``ursa`` command."""
    app.command("demo")(user_errors(demo))
