"""The typed training config: one definition, recorded whole, compared whole on resume."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.cli import app
from ursa.core.bundle import read_bundle
from ursa.core.errors import ConfigError
from ursa.data import ImageData
from ursa.train import Learner, SilentLogger
from ursa.train.checkpoint import CheckpointError
from ursa.train.config import TrainConfig, setting_fields


def test_round_trip_and_unknown_names() -> None:
    config = TrainConfig().replace(label_smoothing=0.1, balance="sampler", patience=2, seed=7)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.differences(TrainConfig()) == [
        "label_smoothing: 0.1 -> 0.0", "balance: 'sampler' -> 'none'", "patience: 2 -> None",
        "seed: 7 -> None",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="unknown training setting 'label_smothing'"):
        TrainConfig().replace(label_smothing=0.1)
    with pytest.raises(ConfigError, match="precision='fp8'"):
        TrainConfig().replace(precision="fp8")
    with pytest.raises(ConfigError, match="unknown group"):
        TrainConfig.from_dict({"model": {}, "extra": {}})
    # an older record (fewer settings) takes the defaults for the rest
    assert TrainConfig.from_dict({"loss": {"label_smoothing": 0.2}}).loss.label_smoothing == 0.2


def test_setting_names_are_unique_across_groups() -> None:
    names = [f.name for f in setting_fields()]
    assert len(names) == len(set(names))


def test_train_flags_are_generated_from_the_config() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for field in setting_fields():
        flag = field.metadata["flag"]
        if flag:
            name = flag if isinstance(flag, str) else "--" + field.name.replace("_", "-")
            assert name in result.output, name


def test_a_bad_setting_on_the_command_line_fails_before_loading(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "missing"), "-o", str(tmp_path / "m.ursa"),
              "--label-smoothing", "1.5"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--label-smoothing 1.5: use 0 up to 1" in result.output  # the flag, not the field
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "--early-stop", "0",
                                      "--clip", "-1"])  # fmt: skip
    assert "--clip -1.0" in result.output and "--early-stop 0" in result.output  # both at once
    assert "missing" not in result.output


def test_lr_find_has_no_flags_it_would_ignore() -> None:
    result = CliRunner().invoke(app, ["lr-find", "--help"], terminal_width=200)
    assert "--early-stop" not in result.output and "--monitor" not in result.output


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"model": {"arch": 5}}, "arch=5: use str"),
        ({"model": {"pretrained": "no"}}, "pretrained='no': use bool"),
        ({"optimizer": {"accumulate": 1.5}}, "accumulate=1.5: use int"),
        ({"fit": {"patience": True}}, "patience=True: use int or none"),
        ({"model": {"label_smoothing": 0.1}}, "label_smoothing under 'model'"),
    ],
)
def test_a_damaged_config_is_one_config_error(values: dict[str, object], says: str) -> None:
    """A config read from a checkpoint or bundle: wrong types, or a setting in the wrong
    group, are refused with the setting named (a truthy "no" was read as pretrained)."""
    with pytest.raises(ConfigError, match=re.escape(says)):
        TrainConfig.from_dict(values)


def _learner(folder: Path, **settings: object) -> Learner:
    data = ImageData.from_folder(folder, size=32, batch_size=8, num_workers=0, seed=0)
    return Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("data") / "colours", per_class=8)


@pytest.mark.parametrize(
    "changed",
    [{"label_smoothing": 0.1}, {"weight_decay": 0.1}, {"balance": "weights"},
     {"drop_rate": 0.5}, {"train_bn": False}, {"seed": 3}],
)  # fmt: skip
def test_resume_with_a_changed_setting_is_refused_naming_it(
    folder: Path, tmp_path: Path, changed: dict[str, object]
) -> None:
    runs = tmp_path / "runs"
    _learner(folder, checkpoint_dir=runs).fit_one_cycle(1, 1e-2)
    _learner(folder).resume(runs)  # the same settings resume
    (name,) = changed
    with pytest.raises(CheckpointError, match=f"{name}: "):
        _learner(folder, **changed).resume(runs)


@pytest.mark.parametrize(
    ("data_settings", "says"),
    [({"batch_size": 4}, "batch_size: 8 -> 4"), ({"size": 48}, "preprocess: "),
     ({"valid_pct": 0.3}, "valid_pct: 0.2 -> 0.3"), ({"augment": "none"}, "augment: ")],
)  # fmt: skip
def test_resume_with_other_data_settings_is_refused_naming_them(
    folder: Path, tmp_path: Path, data_settings: dict[str, object], says: str
) -> None:
    runs = tmp_path / "runs"
    _learner(folder, checkpoint_dir=runs).fit_one_cycle(1, 1e-2)
    settings: dict[str, object] = {
        "size": 32, "batch_size": 8, "num_workers": 0, "seed": 0, **data_settings
    }  # fmt: skip
    data = ImageData.from_folder(folder, **settings)  # type: ignore[arg-type]
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    with pytest.raises(CheckpointError, match=re.escape(says)):
        learner.resume(runs)


def test_the_bundle_records_the_config_whole(folder: Path, tmp_path: Path) -> None:
    learner = _learner(folder, label_smoothing=0.05, weight_decay=0.02)
    learner.fit_one_cycle(1, 1e-2)
    bundle = learner.export(tmp_path / "m.ursa")
    with zipfile.ZipFile(bundle) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["schema_version"] == 2
    assert TrainConfig.from_dict(config["training"]["config"]) == learner.config
    record = read_bundle(bundle).config.record
    assert record.config == learner.config.to_dict()
    assert record.train_images == len(learner.data.train_items)
    assert record.device == "cpu" and record.processes == 1
    assert record.torch_version and record.python_version and record.train_seconds
