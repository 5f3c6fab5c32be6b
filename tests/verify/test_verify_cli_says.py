"""``ursa verify`` says that it wrote the folder's manifest, created or updated."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import make_class_folder
from ursa.cli import app

runner = CliRunner()


def test_verify_without_fix_says_it_wrote_the_manifest(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "colours", per_class=3)
    first = runner.invoke(app, ["verify", str(folder)])
    assert first.exit_code == 0, first.output
    assert (folder / "ursa.sqlite").is_file()
    assert f"in {folder}/ursa.sqlite (created" in first.output, first.output
    again = runner.invoke(app, ["verify", str(folder)])
    assert again.exit_code == 0 and f"in {folder}/ursa.sqlite (updated" in again.output
