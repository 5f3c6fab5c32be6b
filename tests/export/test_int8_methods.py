"""Each int8 method on the tiny model, and ``ursa export --int8`` trying them cheapest first.

The "outlier" bundle is the tiny trained model with one channel of its last feature map
made a constant 500 that the classifier ignores (weight 0): the fp32 model predicts the
same, but per-tensor int8 activations now need a step of about 2 for features that
matter at a scale of 1, the failure the issue measured on fine-tuned backbones (ranges
of ±50-75 on a few tensors).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from tests.export.bundles import copy_bundle
from ursa.cli import app
from ursa.core.bundle import INT8_NAME, ONNX_NAME, read_bundle, write_bundle
from ursa.core.errors import ConfigError
from ursa.core.runtime import Predictor
from ursa.export.deploy import calibration_split, export_for_serving
from ursa.export.onnx import ExportError
from ursa.export.quantize import METHODS, Quantizer, load_inputs, logits, session_for

#: The outlier bundle's float nodes: the constant channel's path to the classifier.
OUTLIER_PATH = {"/conv_head/Conv", "/bn2/act/Mul", "/global_pool/pool/GlobalAveragePool"}


@pytest.fixture(scope="module")
def outlier_bundle(
    tiny_served: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(the outlier bundle, fp32 only, its data folder); tests copy it before exporting."""
    from safetensors.torch import load, save

    source = read_bundle(tiny_served[0])
    state = load(source.read("model.safetensors"))
    state["bn2.weight"][0] = 0.0  # channel 0 after the head's BN: the constant 500
    state["bn2.bias"][0] = 500.0
    state["classifier.weight"][:, 0] = 0.0  # ... which no logit reads
    path = tmp_path_factory.mktemp("outlier") / "outlier.ursa"
    write_bundle(path, source.config, save(state), source.metrics)
    return path, tiny_served[1]


def _inputs(bundle_path: Path, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration inputs, validation inputs, validation labels) as export builds them."""
    bundle = read_bundle(bundle_path)
    train, valid, labels = calibration_split(bundle, folder)
    chosen = random.Random(0).sample(train, 40)
    config = bundle.config.preprocess
    return load_inputs(chosen, config), load_inputs(valid, config), labels


def _is_qdq(model: bytes) -> bool:
    kinds = {node.op_type for node in onnx.load_from_string(model).graph.node}
    return {"QuantizeLinear", "DequantizeLinear", "Conv"} <= kinds


@pytest.mark.parametrize("method", METHODS)
def test_each_method_gives_a_qdq_model_that_agrees_with_fp32(
    tiny_served: tuple[Path, Path], method: str
) -> None:
    bundle = read_bundle(tiny_served[0])
    fp32 = bundle.read(ONNX_NAME)
    calibration, valid, _ = _inputs(tiny_served[0], tiny_served[1])
    with Quantizer(fp32, calibration) as quantizer:
        candidate = quantizer.build(method)  # type: ignore[arg-type]
    assert candidate.method == method and _is_qdq(candidate.model)
    reference = logits(session_for(fp32), valid)
    quantized = logits(session_for(candidate.model), valid)  # (24, 3), ONNX Runtime ran it
    assert quantized.shape == reference.shape
    assert (quantized.argmax(axis=1) == reference.argmax(axis=1)).all()
    assert np.abs(quantized - reference).max() < 0.1 * np.abs(reference).max()


def test_the_sensitivity_pass_keeps_the_outlier_path_in_float(
    outlier_bundle: tuple[Path, Path],
) -> None:
    from ursa.export.onnx import export_onnx

    fp32, _ = export_onnx(read_bundle(outlier_bundle[0]))
    calibration, valid, _ = _inputs(*outlier_bundle)
    reference = logits(session_for(fp32), valid).argmax(axis=1)
    with Quantizer(fp32, calibration) as quantizer:
        static = quantizer.build("static")
        sensitivity = quantizer.build("sensitivity")
    static_agree = (logits(session_for(static.model), valid).argmax(axis=1) == reference).mean()
    assert static_agree < 0.6  # the outlier crushes every other feature at int8
    assert set(sensitivity.float_nodes) >= OUTLIER_PATH and len(sensitivity.float_nodes) <= 6
    assert _is_qdq(sensitivity.model)  # everything else still int8
    kept = logits(session_for(sensitivity.model), valid).argmax(axis=1)
    assert (kept == reference).all()


def test_export_ships_the_first_method_the_gate_accepts(
    outlier_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = copy_bundle(outlier_bundle[0], tmp_path / "m.ursa")
    result = CliRunner().invoke(
        app, ["export", str(bundle), "--onnx", "--int8", "--calibrate", str(outlier_bundle[1])]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "model.int8.onnx (sensitivity, " in output and "nodes kept in float" in output
    assert "int8 agrees with fp32 on 24/24" in output and "McNemar exact p = " in output
    assert "model time, one image: int8 " in output
    assert "also tried: static, refused (drop " in output
    record = read_bundle(bundle).metrics["export"]["int8"]
    assert record["method"] == "sensitivity" and set(record["float_nodes"]) >= OUTLIER_PATH
    assert [entry["method"] for entry in record["tried"]] == ["static"]
    assert record["tried"][0]["accepted"] is False and record["gate"]["accepted"] is True
    assert record["fp32_ms"] > 0 and record["int8_ms"] > 0
    served = Predictor(bundle, int8=True)
    image = sorted(outlier_bundle[1].rglob("*.png"))[0]
    assert served.predict(image).label == image.parent.name


def test_a_tiny_model_exports_int8_at_the_default_gate(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_served[0], tmp_path / "m.ursa")
    result = export_for_serving(bundle, onnx=False, int8=True, calibrate=tiny_served[1])
    assert result.int8 is not None and result.int8.method == "static"  # the cheapest held
    assert result.int8.gate.accepted and result.int8.tried == ()
    assert result.int8.gate.agreement == 1.0 and result.int8.drop_points == 0.0
    assert read_bundle(bundle).metrics["export"]["int8"]["method"] == "static"


def test_a_refused_int8_model_writes_no_int8_member(
    outlier_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = copy_bundle(outlier_bundle[0], tmp_path / "m.ursa")
    with pytest.raises(ExportError) as caught:
        export_for_serving(
            bundle, onnx=True, int8=True, calibrate=outlier_bundle[1], methods=("static",)
        )
    message = str(caught.value)
    assert message.startswith("int8 model refused (static): 24 validation images")
    assert "McNemar exact p = " in message and "Tried before it" not in message
    members = read_bundle(bundle).members
    assert ONNX_NAME in members and INT8_NAME not in members  # the checked fp32 model kept
    assert [p.name for p in tmp_path.iterdir()] == ["m.ursa"]  # no temporary left behind


def test_unknown_int8_methods_are_refused(tiny_served: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match=r"int8 methods 'qat': use some of static, sensitivity"):
        export_for_serving(
            tiny_served[0],
            int8=True,
            calibrate=tiny_served[1],
            methods=("qat",),  # type: ignore[arg-type]
        )
