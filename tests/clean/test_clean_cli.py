"""``ursa clean DATA --history / --undo N / --undo-all``, and the command's user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.clean.conftest import assert_journal_matches_disk, snapshot
from tests.conftest import make_class_folder
from ursa.clean.journal import Journal
from ursa.cli import app

runner = CliRunner()


@pytest.fixture
def decided(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder with three decisions in effect (relabel, delete, keep), and its snapshot
    from before them."""
    folder = make_class_folder(tmp_path / "colours", per_class=3)
    before = snapshot(folder)
    with Journal(folder) as journal:
        journal.sync()
        ids = {image.path: image.id for image in journal.images()}
        journal.relabel(ids["red/00.png"], "green")
        journal.delete(ids["blue/01.png"])
        journal.keep(ids["green/02.png"])
    return folder, before


def test_history_lists_decisions_and_counts_them(decided: tuple[Path, dict[str, str]]) -> None:
    folder, _ = decided
    result = runner.invoke(app, ["clean", str(folder), "--history"])
    assert result.exit_code == 0, result.output
    assert "#1" in result.output and "relabel red/00.png: red → green" in result.output
    assert "delete blue/01.png" in result.output and "keep green/02.png" in result.output
    assert "in effect: 1 relabeled, 1 deleted, 1 kept (0 undone)" in result.output


def test_undo_one_then_all_puts_every_file_back(decided: tuple[Path, dict[str, str]]) -> None:
    folder, before = decided
    result = runner.invoke(app, ["clean", str(folder), "--undo", "2"])
    assert result.exit_code == 0, result.output
    assert "undo #2" in result.output and (folder / "blue/01.png").is_file()
    result = runner.invoke(app, ["clean", str(folder), "--undo-all"])
    assert result.exit_code == 0, result.output
    assert "in effect: 0 relabeled, 0 deleted, 0 kept (3 undone)" in result.output
    assert snapshot(folder) == before
    assert_journal_matches_disk(folder)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{folder}"], "give the bundle and the folder"),
        (["{folder}", "--undo", "9"], "no decision #9"),
        (["{folder}/nowhere", "--history"], "is not a folder"),
    ],
)
def test_user_errors_say_what_to_do(
    decided: tuple[Path, dict[str, str]], arguments: list[str], message: str
) -> None:
    folder, _ = decided
    result = runner.invoke(app, ["clean", *(a.format(folder=folder) for a in arguments)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_history_of_a_folder_never_cleaned_writes_nothing(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "fresh", per_class=1)
    result = runner.invoke(app, ["clean", str(folder), "--history"])
    assert result.exit_code == 0 and "no decisions yet" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["blue", "green", "red"]


def test_a_port_in_use_is_a_clear_error(decided: tuple[Path, dict[str, str]]) -> None:
    import socket

    folder, _ = decided
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(
            app, ["clean", str(folder / "m.ursa"), str(folder), "--port", port, "--no-browser"]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output
