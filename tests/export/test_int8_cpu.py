"""int8 on CPUs whose int8 kernels saturate (x86 without VNNI): the detection checked on
this CPU, 7-bit weights, and the warning a server gives for a model whose weights saturate
here (the flag parsing alone: ``tests/core/test_cpu.py``).

The detection is checked against this machine's own ONNX Runtime: a convolution whose
8-bit products overflow a 16-bit pair sum gives different logits from the exact QDQ
arithmetic exactly when :func:`ursa.core.cpu.int8_kernels` says ``saturating``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.export.bundles import copy_bundle, shared_tiny_bundle
from ursa.core import cpu
from ursa.core.bundle import INPUT_NAME, METRICS_NAME, read_bundle
from ursa.export.quantize import Quantizer, logits, session_for


def _saturating_model() -> bytes:
    """input (N, 3, 4, 4) → 1×1 conv, every weight +1 → ReLU → average → Gemm: at an
    input of 1.0 (uint8 255) each pair of 8-bit products is 2 × 255 × 127 > 32,767."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((8, 3, 1, 1), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    head = numpy_helper.from_array(np.eye(8, 4, dtype=np.float32), "head")
    head_bias = numpy_helper.from_array(np.zeros(4, np.float32), "head_bias")
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "w", "b"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["act"], name="act"),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "head", "head_bias"], ["logits"], name="logits"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturation",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [weights, bias, head, head_bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _exact(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """The QDQ model's logits with no graph optimisation: Q/DQ run as written and every
    Conv in float on the dequantized values, the arithmetic int8 kernels should match."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: inputs})[0])


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_int8_kernels_says_what_this_cpu_computes(weight_bits: int) -> None:
    kernels = cpu.int8_kernels()
    if kernels == "unknown":
        pytest.skip("this CPU's int8 kernels cannot be told from its flags here")
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0.0, 1.0, (8, 3, 4, 4)).astype(np.float32)
    calibration[0] = 1.0  # the range's top, uint8 255
    inputs = np.ones((2, 3, 4, 4), np.float32)
    with Quantizer(_saturating_model(), calibration, weight_bits=weight_bits) as quantizer:
        model = quantizer.quantize()
    optimised, exact = logits(session_for(model), inputs), _exact(model, inputs)
    np.testing.assert_allclose(exact, np.full((2, 4), 3.0), rtol=0.02)  # 3 inputs of 1.0
    saturated = not np.allclose(optimised, exact, rtol=0.02, atol=0.05)
    print(f"{kernels} kernels, {weight_bits}-bit weights: {optimised[0]} against {exact[0]}")
    assert saturated == (kernels == "saturating" and weight_bits == 8)


def test_seven_bit_weights_stay_within_64_levels() -> None:
    import onnx
    from onnx import numpy_helper

    calibration = np.random.default_rng(1).uniform(0, 1, (8, 3, 4, 4)).astype(np.float32)
    with Quantizer(_saturating_model(), calibration, weight_bits=7) as quantizer:
        model = onnx.load_from_string(quantizer.quantize())
    weights = [
        numpy_helper.to_array(tensor)
        for tensor in model.graph.initializer
        if tensor.data_type == onnx.TensorProto.INT8
    ]
    assert weights and max(int(np.abs(w).max()) for w in weights) == 64


def test_a_server_on_a_saturating_cpu_warns_about_an_8_bit_int8_model(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ursa.core.bundle import write_bundle
    from ursa.core.runtime import Predictor

    source = read_bundle(shared_tiny_bundle(tmp_path_factory)[0])
    monkeypatch.setattr(cpu, "int8_kernels", lambda: "saturating")
    for bits, warned in [(8, True), (7, False)]:
        bundle = copy_bundle(source.path, tmp_path / f"w{bits}.ursa")
        members = read_bundle(bundle)
        exported = members.metrics["export"]
        metrics = {
            **members.metrics,
            "export": {**exported, "int8": {**exported["int8"], "weight_bits": bits}},
        }
        extra = {name: members.read(name) for name in members.members if name.endswith(".onnx")}
        write_bundle(bundle, members.config, members.read("model.safetensors"), metrics, extra)
        written = json.loads(read_bundle(bundle).read(METRICS_NAME))
        assert written["export"]["int8"]["weight_bits"] == bits
        predictor = Predictor(bundle, int8=True)
        assert (predictor.int8_warning is not None) == warned
        assert predictor.describe()["int8_warning"] == predictor.int8_warning
        assert Predictor(bundle).int8_warning is None  # fp32 never saturates
