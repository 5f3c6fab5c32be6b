"""The ``ursa`` command line: :mod:`ursa.cli.commands` builds it from one module per
command; :mod:`ursa.cli.options` holds the data flags, :mod:`ursa.cli.support` the console,
the error wrapper and the output helpers."""

from ursa.cli.commands import app, main

__all__ = ["app", "main"]
