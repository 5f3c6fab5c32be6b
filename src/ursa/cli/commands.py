"""The ``ursa`` command: one module per subcommand, registered here in pipeline order.

Each module of :mod:`ursa.cli` named after a command defines the command's function
and ``register(app)``; ``ursa --help`` lists the commands in the order below, which is
the order of the workflow (gather, verify, train, interpret, clean, export, serve).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ursa.cli import (
    bench,
    clean,
    demo,
    export,
    gather,
    interpret,
    lr_find,
    predict,
    serve,
    show,
    train,
    verify,
)
from ursa.cli.support import console
from ursa.core.version import __version__

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


#: The commands' modules, in the order of the workflow (and of ``ursa --help``).
COMMANDS = (
    gather,
    verify,
    show,
    train,
    lr_find,
    interpret,
    clean,
    export,
    predict,
    serve,
    bench,
    demo,
)
for _command in COMMANDS:
    _command.register(app)


def main() -> None:
    """Entry point of the ``ursa`` script."""
    app(prog_name="ursa")
