"""Where a command writes is checked before its slow part; ``ursa train`` needs no -o."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.cli import app
from ursa.cli.checks import bundle_output, default_bundle
from ursa.core.bundle import read_bundle
from ursa.core.errors import ConfigError

runner = CliRunner()
QUICK = ["--arch", TINY_ARCH, "--no-pretrained", "--epochs", "1", "--size", "32",
         "--batch-size", "8", "--workers", "0", "--lr", "1e-2"]  # fmt: skip


def test_train_into_an_existing_folder_writes_data_ursa_there(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "bears", per_class=6)
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    result = runner.invoke(app, ["train", str(data), "-o", str(outdir), *QUICK])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    bundle = outdir / "bears.ursa"
    assert f"{outdir} is a folder: the bundle goes into it, as {bundle}" in result.output
    assert f"wrote {bundle}" in result.output
    assert read_bundle(bundle).config.class_names == ["blue", "green", "red"]


def test_train_without_o_writes_data_ursa_beside_the_folder(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "bears", per_class=6)
    result = runner.invoke(app, ["train", str(data), *QUICK])
    assert result.exit_code == 0, result.output
    assert f"no -o given: the bundle goes beside the data, as {tmp_path / 'bears.ursa'}" in (
        result.output
    )
    assert read_bundle(tmp_path / "bears.ursa").config.class_names == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model.pt", "a bundle is a .ursa file"),
        ("model.onnx", "name it"),
        ("blocker/model.ursa", "is a file, so no folder can be made there"),
    ],
)
def test_train_refuses_an_unusable_output_before_training(
    tmp_path: Path, name: str, message: str
) -> None:
    data = make_class_folder(tmp_path / "bears", per_class=6)
    (tmp_path / "blocker").write_text("a file where a folder would go")
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / name), *QUICK])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "train_loss" not in result.output  # refused before the first epoch
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("**/*.ursa"))


def test_the_bundle_name_follows_the_folder_and_gets_its_suffix(tmp_path: Path) -> None:
    assert default_bundle(Path("bears")) == Path("bears.ursa")
    assert default_bundle(tmp_path / "data" / "bears") == tmp_path / "data" / "bears.ursa"
    assert bundle_output(tmp_path / "model", tmp_path / "bears") == (
        tmp_path / "model.ursa", f"bundles end in .ursa: writing {tmp_path / 'model.ursa'}"
    )  # fmt: skip
    assert bundle_output(tmp_path / "new" / "m.ursa", tmp_path) == (tmp_path / "new" / "m.ursa",
                                                                   None)  # fmt: skip
    with pytest.raises(ConfigError, match="no name to call the bundle by"):
        default_bundle(Path("/"))


def test_train_and_lr_find_refuse_bad_plot_and_checkpoint_places_before_reading(
    tmp_path: Path,
) -> None:
    """--history-plot, --checkpoint-dir and lr-find's --plot are checked before any data
    is read: a folder given as the plot, a file given as the checkpoint folder."""
    folder = tmp_path / "missing-data"  # never read: the checks come first
    (tmp_path / "plots").mkdir()
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["train", str(folder), "--history-plot", str(tmp_path / "plots")], "--history-plot"),
        (["train", str(folder), "--checkpoint-dir", str(tmp_path / "a-file")], "--checkpoint-dir"),
        (["lr-find", str(folder), "--plot", str(tmp_path / "plots")], "--plot"),
    ]
    for args, flag in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert flag in result.output and "missing-data" not in result.output, result.output
