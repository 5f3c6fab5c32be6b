"""``ursa interpret`` refuses input flags it could not honour, and checks DATA and -o before
it loads the model."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.interpret.conftest import Trained
from ursa.cli import app

runner = CliRunner()


def test_a_size_other_than_the_models_is_refused_not_ignored(
    trained: Trained, tmp_path: Path
) -> None:
    bundle = trained.learner.export(tmp_path / "m.ursa")  # trained at 32 px
    out = tmp_path / "report"
    args = ["interpret", str(bundle), str(trained.root), "-o", str(out)]
    result = runner.invoke(app, [*args, "--size", "64", "--resize", "pad"])
    assert result.exit_code == 1, result.output
    assert "--size 64 (the model takes 32)" in result.output
    assert "--resize pad (the model takes crop)" in result.output
    assert "Traceback" not in result.output and not out.exists()
    same = runner.invoke(app, [*args, "--size", "32", "--no-heatmap", "--top-k", "2"])
    assert same.exit_code == 0, same.output  # the model's own size is no change: accepted


def test_a_missing_data_folder_or_a_file_as_output_is_named_first(
    trained: Trained, tmp_path: Path
) -> None:
    missing = tmp_path / "not-a-bundle.ursa"  # the model is never reached
    result = runner.invoke(app, ["interpret", str(missing), str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "nowhere does not exist" in result.output, result.output
    (tmp_path / "taken").write_text("a file")
    args = ["interpret", str(missing), str(trained.root), "-o", str(tmp_path / "taken")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "-o " in result.output and "is a file" in result.output
