from __future__ import annotations

import zipfile
from pathlib import Path

from typer.testing import CliRunner

from tests.interpret.conftest import Trained
from ursa.cli import app
from ursa.core.bundle import read_bundle

runner = CliRunner()


def test_interpret_writes_the_files_and_the_card(trained: Trained, tmp_path: Path) -> None:
    bundle = trained.learner.export(tmp_path / "m.ursa")
    weights = read_bundle(bundle).read("model.safetensors")
    out = tmp_path / "report"
    args = ["interpret", str(bundle), str(trained.root), "--split", "train", "-o", str(out)]
    result = runner.invoke(app, [*args, "--top-k", "4", "--write-card"])
    assert result.exit_code == 0, result.output
    for name in ("confusion.png", "top_losses.png", "most_confused.csv", "per_class.csv",
                 "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    assert "added card.html" in result.output and "train:" in result.output
    opened = read_bundle(bundle)
    assert "card.html" in opened.members
    assert opened.read("card.html") == (out / "report.html").read_bytes()
    assert opened.read("model.safetensors") == weights  # the rest kept byte for byte
    with zipfile.ZipFile(bundle) as archive:
        assert archive.testzip() is None


def test_interpret_user_errors_are_one_line(trained: Trained, tmp_path: Path) -> None:
    bundle = trained.learner.export(tmp_path / "m.ursa")
    result = runner.invoke(app, ["interpret", str(bundle), str(trained.root), "--split", "test"])
    assert result.exit_code == 2  # refused by the option's choices, before the command runs
    assert "is not one of" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["interpret", str(tmp_path / "none.ursa"), str(trained.root)])
    assert result.exit_code == 1 and "no such bundle" in result.output
