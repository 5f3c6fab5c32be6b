from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import TINY_ARCH
from ursa.cli import app
from ursa.core.version import __version__

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_train_skips_bad_files_then_predict_uses_the_bundle(
    messy_folder: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "m.ursa"
    args = ["train", str(messy_folder), "-o", str(bundle), "--arch", TINY_ARCH, "--no-pretrained"]
    args += ["--epochs", "1", "--size", "32", "--batch-size", "8", "--workers", "0", "--lr", "1e-2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("truncated.jpg", "empty.jpg", "notes.jpg"):
        assert name in result.output
    assert "skipped 3 unreadable" in result.output
    assert "error_rate" in result.output and "unfrozen" in result.output
    assert bundle.is_file()

    images = [messy_folder / "red" / "00.jpg", messy_folder / "blue" / "01.jpg"]
    result = runner.invoke(app, ["predict", str(bundle), *map(str, images)])
    assert result.exit_code == 0, result.output
    assert "00.jpg" in result.output and "01.jpg" in result.output

    bad = messy_folder / "green" / "empty.jpg"
    result = runner.invoke(app, ["predict", str(bundle), str(images[0]), str(bad)])
    assert result.exit_code == 1  # one file failed ...
    assert (
        "empty" in result.output and "00.jpg" in result.output
    )  # ... and the other still answered


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", str(tmp_path / "missing"), "-o", str(tmp_path / "m.ursa")]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
    not_a_bundle = tmp_path / "x.ursa"
    not_a_bundle.write_text("x")
    result = runner.invoke(app, ["predict", str(not_a_bundle), str(not_a_bundle)])
    assert result.exit_code == 1 and "not a zip file" in result.output
