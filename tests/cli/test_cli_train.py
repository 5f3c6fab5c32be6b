"""`ursa lr-find` and `ursa train`'s training options."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.cli import app

runner = CliRunner()
TINY = ["--arch", TINY_ARCH, "--no-pretrained", "--size", "32"]


def test_lr_find_prints_a_suggestion_and_writes_the_plot(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=20)
    plot = tmp_path / "lr.png"
    result = runner.invoke(
        app, ["lr-find", str(folder), *TINY, "--batch-size", "16", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    assert "suggested learning rate (valley):" in result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_train_with_auto_lr_checkpoints_early_stopping_and_history_plot(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=20)
    bundle, runs, history = tmp_path / "m.ursa", tmp_path / "runs", tmp_path / "history.png"
    args = ["train", str(folder), "-o", str(bundle), *TINY, "--batch-size", "16", "--workers", "0"]
    args += ["--epochs", "2", "--lr", "auto", "--checkpoint-dir", str(runs), "--early-stop", "3"]
    args += ["--monitor", "macro_f1", "--keep-best", "--label-smoothing", "0.1"]
    args += ["--balance", "weights", "--clip", "1.0", "--history-plot", str(history)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # 48 images in batches of 16: too few sweep steps for a curve, so the default stays
    assert "lr-find cannot suggest a rate here (only" in result.output
    assert "macro_f1" in result.output
    assert (runs / "last.ckpt").is_file() and history.read_bytes()[:4] == b"\x89PNG"
    with zipfile.ZipFile(bundle) as archive:
        config = json.loads(archive.read("config.json"))
        metrics = json.loads(archive.read("metrics.json"))
    assert config["training"]["options"]["keep_best"] is True
    assert set(metrics["final"]["per_class"]) == {"blue", "green", "red"}

    # resuming a finished run trains nothing more and writes the same bundle again
    again = runner.invoke(app, [*args, "--resume", str(runs)])
    assert again.exit_code == 0, again.output
    assert "lr-find suggests" not in again.output  # the rate comes from the checkpoint


def test_train_rejects_a_bad_learning_rate_and_balance(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=4)
    base = ["train", str(folder), "-o", str(tmp_path / "m.ursa"), *TINY]
    result = runner.invoke(app, [*base, "--lr", "fast"])
    assert result.exit_code == 1 and "--lr fast" in result.output
    result = runner.invoke(app, [*base, "--balance", "maybe"])  # the choices, from the config
    assert result.exit_code == 2 and "'maybe' is not one of" in result.output
    result = runner.invoke(app, [*base, "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no checkpoint" in result.output


def test_no_keep_best_ends_with_the_last_epoch(tmp_path: Path) -> None:
    """fine_tune keeps the best weights by default; --no-keep-best turns that off (it
    used to set only an option fine_tune then overrode)."""
    folder = make_class_folder(tmp_path / "c", per_class=12)
    bundle = tmp_path / "m.ursa"
    args = ["train", str(folder), "-o", str(bundle), *TINY, "--workers", "0", "--epochs", "2"]
    result = runner.invoke(app, [*args, "--no-keep-best", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(bundle) as archive:
        config = json.loads(archive.read("config.json"))
        metrics = json.loads(archive.read("metrics.json"))
    assert config["training"]["options"]["keep_best"] is False
    assert metrics["final"]["error_rate"] == metrics["history"][-1]["error_rate"]
