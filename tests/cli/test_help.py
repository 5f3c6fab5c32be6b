"""``ursa --help`` and every command's help: choices where an option takes one of a set,
flags without a value type, and one short sentence per command in the list."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import typer
from typer.testing import CliRunner

from ursa.cli import app, choices

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def help_of(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_flags_show_no_value_type(command: str) -> None:
    text = help_of(*([command] if command else []))
    assert "<bool>" not in text
    assert "--help" in text


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("serve", "<cpu|cuda|tensorrt>"),
        ("gather", "<openverse|ddg|bing|google>"),
        ("gather", "<any|commercial|modification>"),
        ("sources", "<csv|json>"),
        ("show", "<default|no_flip|none>"),
        ("show", "<train|valid>"),
        ("show", "<crop|pad|squish>"),
        ("show", "<folder|regex|csv>"),
        ("interpret", "<valid|train|all>"),
        ("interpret", "<image|audio|bytes>"),
        ("export", "<auto|fp32|int8>"),
    ],
)
def test_options_that_take_one_of_a_set_show_the_set(command: str, shown: str) -> None:
    assert shown in help_of(command)


def values(alias: Any) -> tuple[Any, ...]:
    return get_args(alias)


def test_the_choices_are_the_librarys_own_lists() -> None:
    from ursa.core.preprocess import PAD_MODES, RESIZE_METHODS
    from ursa.core.runtime import PROVIDERS
    from ursa.core.sources import source_from_dict
    from ursa.data.augment import AUGMENT_PRESETS
    from ursa.data.labels import LABEL_METHODS
    from ursa.export.web import PRECISIONS
    from ursa.gather.search import LICENSE_FILTERS
    from ursa.gather.search import PROVIDERS as SEARCHES
    from ursa.interpret.interpretation import SPLITS

    assert values(choices.Provider) == tuple(PROVIDERS)
    assert values(choices.SearchProvider) == SEARCHES
    assert values(choices.License) == LICENSE_FILTERS
    assert values(choices.Augment) == tuple(AUGMENT_PRESETS)
    assert values(choices.InterpretSplit) == SPLITS
    assert set(values(choices.WebPrecision)) == set(PRECISIONS)
    assert values(choices.ResizeMethod) == RESIZE_METHODS
    assert values(choices.PadMode) == PAD_MODES
    assert values(choices.LabelMethod) == LABEL_METHODS
    assert [source_from_dict({"kind": kind}).kind for kind in values(choices.InputKind)] == list(
        values(choices.InputKind)
    )


def test_each_command_is_one_short_sentence_in_the_list() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        first = (command.help or "").strip().split("\n\n")[0]
        assert "\n" not in first and len(first) <= 64, (name, first)
        assert first.endswith(".") and first.count(". ") == 0, (name, first)
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}).output
    rows = [line for line in listing[listing.index("Commands") :].splitlines() if "│" in line]
    assert len(rows) == len(group.commands), rows  # one line each: nothing wraps at 80 columns
