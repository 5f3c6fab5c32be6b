"""The data flags every `ursa` command that reads data shares, and a model trained from a
table being interpreted with the same labels and split."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import TINY_ARCH
from tests.data.test_labels import PETS, pets_rows, write_images, write_table
from ursa.cli import app
from ursa.cli.options import DataOptions
from ursa.core.errors import ConfigError
from ursa.data.labels import DataSpec

runner = CliRunner()
FLAGS = {
    "labels", "pattern", "csv", "label_col", "path_col", "split_col", "valid_list", "valid_pct",
    "seed", "stratify", "size", "resize", "pad_mode", "input", "cache",
}  # fmt: skip


def test_every_command_that_reads_data_takes_the_same_flags() -> None:
    group = typer.main.get_command(app)
    for name in ("train", "lr-find", "show", "interpret"):
        command = group.commands[name]
        params = {p.name: p for p in command.params}
        assert set(params) >= FLAGS, name
        assert "--no-stratify" in params["stratify"].secondary_opts
    # interpret starts from what the bundle recorded: nothing has a default of its own
    interpret = {p.name: p.default for p in group.commands["interpret"].params}
    assert all(interpret[name] is None for name in FLAGS)
    train = {p.name: p.default for p in group.commands["train"].params}
    assert (train["size"], train["valid_pct"], train["seed"]) == (224, 0.2, 42)
    assert train["resize"] is None  # crop for images, squish for audio and bytes


def test_labelling_is_inferred_from_the_flags_given() -> None:
    assert DataOptions().spec() == DataSpec()
    assert DataOptions(pattern="(.+)_").spec() == DataSpec(labels="regex", pattern="(.+)_")
    table = DataOptions(csv=Path("t.csv"), label_col="breed", split_col="is_valid").spec()
    assert table.labels == "csv" and table.split == "column" and table.label_col == "breed"
    assert Path(table.csv or "").is_absolute()


def test_flags_go_over_what_a_bundle_recorded() -> None:
    recorded = DataSpec(labels="csv", csv="labels.csv", label_col="breed", split_col="is_valid",
                        split="column")  # fmt: skip
    assert DataOptions().spec(recorded) == recorded
    listed = DataOptions(valid_list=Path("v.txt")).spec(recorded)
    assert listed.split == "list" and listed.split_col is None and listed.label_col == "breed"
    assert DataOptions(labels="folder").spec(recorded) == DataSpec()
    settings = DataOptions(size=64).settings(size=224, seed=7, valid_pct=0.1)
    assert settings == {"size": 64, "seed": 7, "valid_pct": 0.1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DataOptions(labels="regex"), "--labels regex needs --pattern"),
        (DataOptions(labels="csv"), "--labels csv needs --csv"),
        (DataOptions(label_col="breed"), "--label-col reads a table: use it with --csv"),
        (DataOptions(labels="regex", pattern="(x)", csv=Path("t.csv")), "--csv reads a table"),
        (DataOptions(csv=Path("t.csv"), split_col="v", valid_list=Path("v")), "not both"),
        (DataOptions(labels="yaml"), "--labels yaml: use one of folder, regex, csv"),
    ],
)
def test_flags_that_do_not_go_together_are_named(options: DataOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.spec()


@pytest.mark.slow  # about 20 s on 2 shared cores: a training run and two interprets
def test_a_model_trained_from_a_table_is_interpreted_with_the_same_split(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    write_table(tmp_path / "labels.csv", pets_rows())
    bundle = tmp_path / "m.ursa"
    train = ["train", str(tmp_path), "-o", str(bundle), "--csv", str(tmp_path / "labels.csv")]
    train += ["--label-col", "breed", "--split-col", "is_valid", "--arch", TINY_ARCH]
    train += ["--no-pretrained", "--size", "32", "--epochs", "1", "--freeze-epochs", "0"]
    result = runner.invoke(app, [*train, "--batch-size", "8", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "2 classes, 16 training and 4 validation images" in result.output
    with zipfile.ZipFile(bundle) as archive:
        training = json.loads(archive.read("config.json"))["training"]
    assert training["data"] == {
        "labels": "csv", "split": "column", "csv": "labels.csv", "label_col": "breed",
        "split_col": "is_valid",
    }  # fmt: skip

    interpret = ["interpret", str(bundle), str(tmp_path), "--no-heatmap", "--top-k", "2"]
    result = runner.invoke(app, [*interpret, "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "valid: 4 images" in result.output  # the table's split, rebuilt from the bundle
    result = runner.invoke(app, [*interpret, "-o", str(tmp_path / "r2"), "--split-col", "bad"])
    assert result.exit_code == 1 and "no column 'bad'" in result.output


def test_no_cache_turns_the_decode_cache_off_and_unset_keeps_the_default() -> None:
    assert DataOptions(cache=False).settings()["cache"] is False
    assert "cache" not in DataOptions().settings()
    group = typer.main.get_command(app)
    train = {p.name: p for p in group.commands["train"].params}
    assert "--no-cache" in train["cache"].secondary_opts and train["cache"].default is True
