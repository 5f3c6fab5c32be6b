"""The labelling, splitting and sizing flags every ``ursa`` command that reads data takes.

They are defined once, here. A command asks for them with one parameter::

    @data_options()
    def show(path: ..., options: DataOptions, n: ...) -> None:
        data = options.load(path)

:func:`data_options` replaces that ``options`` parameter, in the signature typer
reads, by the flags (``--labels``, ``--pattern``, ``--csv``, ``--valid-pct``,
``--size``...), and hands the command one :class:`DataOptions` holding them.
``data_options(as_trained=True)`` leaves every flag unset by default, for
commands where a bundle says how its data was read (``ursa interpret``): a flag
given there overrides what the bundle recorded.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Unpack

import typer

from ursa.cli.choices import InputKind, LabelMethod, PadMode, ResizeMethod
from ursa.core.errors import ConfigError
from ursa.data.labels import LABEL_METHODS, DataSpec

if TYPE_CHECKING:
    from ursa.core.bundle import BundleConfig
    from ursa.data.core import DataSettings, ImageData

F = TypeVar("F", bound=Callable[..., Any])

#: The name of the parameter :func:`data_options` replaces by the flags.
PARAMETER = "options"


@dataclass(frozen=True)
class DataOptions:
    """The data flags as given on the command line; None: not given."""

    labels: str | None = None
    """folder, regex or csv; None: csv with --csv, regex with --pattern, else folder."""
    pattern: str | None = None
    csv: Path | None = None
    label_col: str | None = None
    path_col: str | None = None
    split_col: str | None = None
    valid_list: Path | None = None
    valid_pct: float | None = None
    seed: int | None = None
    stratify: bool | None = None
    size: int | None = None
    resize: str | None = None
    pad_mode: str | None = None
    input: str | None = None
    cache: bool | None = None

    @property
    def seed_or_default(self) -> int:
        """The seed given, else the default one (also seeds shuffling and the head)."""
        from ursa.data.core import DataConfig

        return DataConfig.seed if self.seed is None else self.seed

    def spec(self, recorded: DataSpec | None = None) -> DataSpec:
        """How to label and split: the flags given, over ``recorded`` (a bundle's) when
        they keep its labelling method."""
        labels = self.labels or (
            "csv" if self.csv is not None
            else "regex" if self.pattern is not None
            else recorded.labels if recorded is not None
            else "folder"
        )  # fmt: skip
        if labels not in LABEL_METHODS:
            raise ConfigError(f"--labels {labels}: use one of {', '.join(LABEL_METHODS)}")
        base = recorded if recorded is not None and recorded.labels == labels else DataSpec()
        self._check(labels, base)
        values: dict[str, Any] = {"labels": labels}
        for name in ("pattern", "label_col", "path_col", "split_col"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if self.csv is not None:
            values["csv"] = str(self.csv.expanduser().resolve())
        if self.split_col is not None:
            values.update(split="column", valid_list=None)
        if self.valid_list is not None:
            values.update(split="list", split_col=None)
            values["valid_list"] = str(self.valid_list.expanduser().resolve())
        return replace(base, **values)

    def _check(self, labels: str, base: DataSpec) -> None:
        """Flags that do not go together, named as the command line spells them."""
        problems = []
        if self.pattern is not None and labels != "regex":
            problems.append("--pattern labels files by name: use it with --labels regex")
        if labels == "regex" and self.pattern is None and base.pattern is None:
            problems.append("--labels regex needs --pattern, e.g. '^(.+)_\\d+\\.jpg$'")
        if labels == "csv" and self.csv is None and base.csv is None:
            problems.append("--labels csv needs --csv TABLE")
        if labels != "csv":
            table_flags = {"--csv": self.csv, "--label-col": self.label_col,
                           "--path-col": self.path_col, "--split-col": self.split_col}  # fmt: skip
            problems += [f"{flag} reads a table: use it with --csv"
                         for flag, value in table_flags.items() if value is not None]  # fmt: skip
        if self.split_col is not None and self.valid_list is not None:
            problems.append("give --split-col or --valid-list, not both: they are two splits")
        if problems:
            raise ConfigError("; ".join(problems))

    def settings(self, **base: Unpack[DataSettings]) -> DataSettings:
        """``base`` (a command's or a bundle's settings) with the flags given put over it."""
        from ursa.core.sources import source_from_dict
        from ursa.data.core import with_source

        settings: dict[str, Any] = dict(base)
        for name in ("valid_pct", "seed", "stratify", "size", "resize", "pad_mode", "cache"):
            if getattr(self, name) is not None:
                settings[name] = getattr(self, name)
        recorded = settings.get("input")
        if self.input is not None and (recorded is None or recorded.kind != self.input):
            settings["input"] = source_from_dict({"kind": self.input})
        given: DataSettings = settings  # type: ignore[assignment]
        source = given.get("input")
        return given if source is None else with_source(source, given)

    def load(
        self, path: Path, recorded: DataSpec | None = None, **base: Unpack[DataSettings]
    ) -> ImageData:
        """The data in ``path`` as the flags say (over ``recorded`` and ``base``).

        ``path`` is the data folder; a ``--csv`` table's paths are relative to it.
        """
        from ursa.data.core import ImageData

        return ImageData.from_spec(self.spec(recorded), path, **self.settings(**base))

    def load_as_trained(self, path: Path, config: BundleConfig) -> ImageData:
        """The data in ``path`` labelled, split and sized as the bundle ``config`` records,
        but for the flags given."""
        from ursa.data.as_trained import recorded_spec

        return self.load(path, recorded_spec(config), **config.data_settings())


@dataclass(frozen=True)
class _Flag:
    name: str
    kind: Any
    default: Any
    help: str
    panel: str = "Labels and split"
    decls: tuple[str, ...] = ()


_FLAGS = (
    _Flag("labels", LabelMethod, None, "How files get labels: folder (their folder's name), regex "
          "(--pattern on the file name) or csv (a --csv table). Default: csv with --csv, regex "
          "with --pattern, else folder."),
    _Flag("pattern", str, None, "Regex on file names; the label is group 1 or (?P<label>...), "
          "e.g. '^(.+)_\\d+\\.jpg$'."),
    _Flag("csv", Path, None, "CSV/TSV of files and labels; paths relative to the data folder."),
    _Flag("label_col", str, None, "The table's label column (default: label)."),
    _Flag("path_col", str, None, "The table's file column (default: the first other column)."),
    _Flag("split_col", str, None, "Table column marking validation rows: true/false, 1/0, "
          "yes/no or train/valid."),
    _Flag("valid_list", Path, None, "Text file naming the validation files, one a line (names, "
          "or paths relative to the data folder)."),
    _Flag("valid_pct", float, 0.2, "Validation fraction (random split)."),
    _Flag("seed", int, 42, "Seed for the split, shuffling and head init."),
    _Flag("stratify", bool, True, "Hold out the same fraction of every class.",
          decls=("--stratify/--no-stratify",)),
    _Flag("size", int, 224, "Input side in pixels.", "Input"),
    _Flag("resize", ResizeMethod, None, "How a file becomes square: crop its centre, pad it or "
          "squish it. Default: crop for images, squish for audio and bytes.", "Input"),
    _Flag("pad_mode", PadMode, "zeros", "How --resize pad fills the margin: black, the edge "
          "pixels repeated or the image mirrored.", "Input"),
    _Flag("input", InputKind, "image", "What the files are: image, audio (clips drawn as "
          "spectrograms) or bytes (a file's bytes drawn as a picture).", "Input"),
    _Flag("cache", bool, True, "Keep decoded, resized files in the decode cache "
          "($URSA_CACHE_DIR, else ~/.cache/ursa) so later epochs skip decoding.", "Input",
          decls=("--cache/--no-cache",)),
)  # fmt: skip


def data_options(*, as_trained: bool = False) -> Callable[[F], F]:
    """Give a command the shared data flags in place of its ``options: DataOptions`` parameter.

    ``as_trained``: every flag defaults to unset (None), for commands that start from
    what a bundle recorded.
    """

    def decorate(command: F) -> F:
        added = [_parameter(flag, as_trained) for flag in _FLAGS]
        return replace_parameter(command, PARAMETER, added, lambda values: DataOptions(**values))

    return decorate


def replace_parameter(
    command: F,
    parameter: str,
    added: list[inspect.Parameter],
    build: Callable[[dict[str, Any]], object],
) -> F:
    """``command`` with its ``parameter`` replaced by the keyword parameters ``added`` (which
    typer turns into flags); the wrapper calls ``command`` with ``parameter`` set to
    ``build({name: value of each added parameter})``. The data flags and the training flags
    (:mod:`ursa.cli.train_options`) are made this way."""
    signature = inspect.signature(command, eval_str=True)  # typer reads real annotations
    if parameter not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a `{parameter}` parameter")
    kept = [p for p in signature.parameters.values() if p.name != parameter]
    names = [p.name for p in added]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        return command(*args, **kwargs, **{parameter: build(values)})

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    annotations = {k: v for k, v in command.__annotations__.items() if k != parameter}
    wrapper.__annotations__ = annotations | {p.name: p.annotation for p in added}
    return wrapper  # type: ignore[return-value]


def _parameter(flag: _Flag, as_trained: bool) -> inspect.Parameter:
    help = flag.help + (" Default: as trained." if as_trained else "")
    option = typer.Option(*flag.decls, help=help, rich_help_panel=flag.panel)
    return inspect.Parameter(
        flag.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None if as_trained else flag.default,
        annotation=Annotated[flag.kind | None, option],
    )


assert {f.name for f in fields(DataOptions)} == {f.name for f in _FLAGS}  # one list of flags
