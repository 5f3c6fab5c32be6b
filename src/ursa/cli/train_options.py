"""The training flags of ``ursa train`` and ``ursa lr-find``, generated from
:class:`ursa.train.config.TrainConfig` (one definition: the field's type, default and
help), as :mod:`ursa.cli.options` does for the data flags."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import Field
from typing import Annotated, Any, TypeVar, get_args, get_origin

import typer

from ursa.cli.options import replace_parameter
from ursa.core.errors import ConfigError
from ursa.train.config import TrainConfig, grouped_fields, setting_type

F = TypeVar("F", bound=Callable[..., Any])

#: The parameter the decorated command receives the config in.
PARAMETER = "settings"
_PANELS = {"model": "Model", "loss": "Loss", "optimizer": "Optimiser", "fit": "Fit", "run": "Run"}


def train_options(*, exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a command the training flags in place of its ``settings: TrainConfig`` parameter;
    the command receives the :class:`TrainConfig` the flags make (invalid values are a
    one-line ``ConfigError`` from the config's own checks, naming the flags). ``exclude``:
    settings the command has no use for (no flag; they keep their defaults)."""
    flagged = [(g, f) for g, f in _flagged() if f.name not in exclude]
    flags = {f.name: _flag_name(f) for _, f in flagged}

    def build(values: dict[str, Any]) -> TrainConfig:
        try:
            return TrainConfig().replace(**values)
        except ConfigError as error:  # the config names its fields; the user typed flags
            message = re.sub(
                r"\b(\w+)=", lambda m: f"{flags[m[1]]} " if m[1] in flags else m[0], str(error)
            )
            raise ConfigError(message) from None

    def decorate(command: F) -> F:
        added = [_parameter(group, field) for group, field in flagged]
        return replace_parameter(command, PARAMETER, added, build)

    return decorate


def _flagged() -> list[tuple[str, Field[Any]]]:
    return [(g, f) for g, f in grouped_fields() if f.metadata.get("flag")]


def _flag_name(field: Field[Any]) -> str:
    flag = field.metadata["flag"]
    return flag if isinstance(flag, str) else "--" + field.name.replace("_", "-")


def _parameter(group: str, field: Field[Any]) -> inspect.Parameter:
    kind = setting_type(group, field.name)
    optional = get_origin(kind) in (typing.Union, types.UnionType) and type(None) in get_args(kind)
    base = next(a for a in get_args(kind) if a is not type(None)) if optional else kind
    dashed = _flag_name(field)
    decls = (f"{dashed}/--no-{dashed[2:]}",) if base is bool else (dashed,)
    option = typer.Option(*decls, help=field.metadata["help"], rich_help_panel=_PANELS[group])
    annotation: Any = Annotated[base | None if optional else base, option]  # Literal: choices
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=annotation
    )
