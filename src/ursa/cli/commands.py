"""The ``ursa`` command: one module per subcommand, registered here in pipeline order.

Each module of :mod:`ursa.cli` named after a command defines the command's function
and ``register(app)``; ``ursa --help`` lists the commands in the order below, which is
the order of the workflow (gather, verify, train, interpret, clean, export, serve).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

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


def _without_flag_types(params: list[Any]) -> list[Any]:
    """``params`` with every flag's value type left out of the help: typer's rich help
    writes ``--int8 <bool>`` and ``--heatmap/--no-heatmap <bool>``, though a flag takes no
    value (an empty metavar is what it then shows). Typed loosely: typer ships its own
    copy of click in some versions and uses click's in others."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    """A subcommand whose help shows flags as ``--flag`` / ``--flag/--no-flag`` alone."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class _Group(TyperGroup):
    """The ``ursa`` group, its ``--version`` and ``--help`` shown as flags too."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class _Typer(typer.Typer):
    """typer's app, whose commands are :class:`_Command` unless told otherwise."""

    def command(self, name: str | None = None, *, cls: Any = None, **settings: Any) -> Any:
        return super().command(name, cls=cls or _Command, **settings)


app = _Typer(
    cls=_Group,
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
