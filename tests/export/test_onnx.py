from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.export.bundles import copy_bundle
from ursa.cli import app
from ursa.core.bundle import read_bundle
from ursa.core.errors import ConfigError
from ursa.core.runtime import Predictor
from ursa.export.deploy import export_for_serving
from ursa.export.model import Model
from ursa.export.onnx import ExportError, check_parity


def _images(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))[::7]


def test_exported_onnx_matches_pytorch_at_any_batch_size(tiny_served: tuple[Path, Path]) -> None:
    bundle_path, folder = tiny_served
    bundle = read_bundle(bundle_path)
    assert {"model.onnx", "model.int8.onnx"} <= set(bundle.members)
    parity = bundle.metrics["export"]["onnx"]
    assert parity["top1_agree"] == parity["images"] > 0 and parity["max_abs_diff"] < 1e-3
    torch_model, onnx_model = Model(bundle), Predictor(bundle)
    images = _images(folder)
    inputs = np.stack([onnx_model.prepare(path) for path in images])  # (N, 3, 32, 32)
    expected = torch_model.logits(inputs)
    np.testing.assert_allclose(onnx_model.logits(inputs), expected, atol=1e-4, rtol=1e-4)
    one_by_one = np.concatenate([onnx_model.logits(row[None]) for row in inputs])
    np.testing.assert_allclose(one_by_one, expected, atol=1e-4, rtol=1e-4)
    labels = [p.label for p in onnx_model.predict_batch(images, batch_size=3)]
    assert labels == [p.label for p in torch_model.predict_batch(images)]


def test_int8_report_is_recorded_and_the_model_runs(tiny_served: tuple[Path, Path]) -> None:
    bundle_path, folder = tiny_served
    report = read_bundle(bundle_path).metrics["export"]["int8"]
    assert report["valid_images"] == 24 and report["calibration_images"] == 66
    drop = (report["fp32_accuracy"] - report["int8_accuracy"]) * 100
    assert report["drop_points"] == pytest.approx(drop, abs=1e-3)
    int8 = Predictor(bundle_path, int8=True)
    prediction = int8.predict(sorted(folder.rglob("*.png"))[0])
    assert prediction.label in int8.class_names
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)


def test_parity_failure_gives_the_numbers() -> None:
    reference = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    check_parity(reference, reference + 5e-4)  # within tolerance
    flipped = reference.copy()
    flipped[1] = [3.5, 3.0, 1.0]
    with pytest.raises(ExportError) as caught:
        check_parity(reference, flipped)
    message = str(caught.value)
    assert "max |difference| 3.5" in message and "top-1 agrees on 1/2" in message


def test_int8_needs_calibration_images(tiny_served: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="--calibrate"):
        export_for_serving(tiny_served[0], int8=True)


def test_export_command_rewrites_the_bundle(tiny_served: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_served[0], tmp_path / "m.ursa")
    with zipfile.ZipFile(bundle) as archive:
        old = archive.read("model.onnx")
    result = CliRunner().invoke(app, ["export", str(bundle), "--onnx"])
    assert result.exit_code == 0, result.output
    assert "top-1 agrees on 8/8" in result.output and "tolerance" in result.output
    rewritten = read_bundle(bundle)
    assert rewritten.read("model.onnx") == old  # deterministic export
    assert "model.int8.onnx" in rewritten.members  # other members kept
    assert [p.name for p in tmp_path.iterdir()] == ["m.ursa"]
