"""Each int8 method on the tiny model, and ``ursa export --int8`` trying them cheapest first.

The "outlier" bundle is the tiny trained model with one channel of its last feature map
made a constant 500 that the classifier ignores (weight 0): the fp32 model predicts the
same, but per-tensor int8 activations now need a step of about 2 for features that
matter at a scale of 1, the failure the issue measured on fine-tuned backbones (ranges
of ±50-75 on a few tensors).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

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
from ursa.export.onnx import ExportError, fold_static_pads
from ursa.export.qat import QatSettings, QatSource, fine_tune_for_int8, instrument
from ursa.export.quantize import (
    METHODS,
    Quantizer,
    load_inputs,
    logits,
    relative_error,
    session_for,
    shape_nodes,
)

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
    source = QatSource(bundle, calibration_split(bundle, tiny_served[1])[0])
    with Quantizer(fp32, calibration, qat=source) as quantizer:
        candidate = quantizer.build(method)  # type: ignore[arg-type]
    assert candidate.method == method and _is_qdq(candidate.model) and candidate.seconds > 0
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
        models = quantizer.build_all("sensitivity")
    static_agree = (logits(session_for(static.model), valid).argmax(axis=1) == reference).mean()
    assert static_agree < 0.6  # the outlier crushes every other feature at int8
    assert set(models[-1].float_nodes) >= OUTLIER_PATH  # the closest to fp32 keeps it
    # ... and so does a model with few other nodes in float.
    sensitivity = next(m for m in models if set(m.float_nodes) >= OUTLIER_PATH)
    assert len(sensitivity.float_nodes) <= 12
    assert _is_qdq(sensitivity.model)  # everything else still int8
    kept = logits(session_for(sensitivity.model), valid).argmax(axis=1)
    assert (kept == reference).all()


def test_the_sensitivity_pass_makes_a_model_for_each_prefix_that_comes_closer(
    outlier_bundle: tuple[Path, Path],
) -> None:
    from ursa.export.onnx import export_onnx
    from ursa.export.quantize import FRONTIER_STEP, SENSITIVITY_IMAGES

    fp32, _ = export_onnx(read_bundle(outlier_bundle[0]))
    calibration, _, _ = _inputs(*outlier_bundle)
    with Quantizer(fp32, calibration) as quantizer:
        models = quantizer.build_all("sensitivity")
        static = quantizer.build("static").model
        closest = quantizer.build("sensitivity")
    probe = calibration[:SENSITIVITY_IMAGES]
    reference = logits(session_for(fp32), probe)
    errors = [relative_error(reference, logits(session_for(m.model), probe)) for m in models]
    assert [m.logit_error for m in models] == pytest.approx(errors)  # what was measured
    assert models[0].float_nodes == () and models[0].model == static  # all int8 first
    assert len(models) >= 3  # the outlier path takes more than one group in float
    for index in range(1, len(models)):
        model, before = models[index], models[index - 1]
        assert model.method == "sensitivity" and model.seconds > 0 and _is_qdq(model.model)
        # Each a tenth closer than the one before, and a longer prefix of one ranking.
        assert errors[index] <= FRONTIER_STEP * errors[index - 1]
        assert model.float_nodes[: len(before.float_nodes)] == before.float_nodes
        assert len(model.float_nodes) > len(before.float_nodes)
    assert closest.float_nodes == models[-1].float_nodes  # build: the closest to fp32


def test_export_tries_every_method_and_ships_the_fastest_that_agrees(
    outlier_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = copy_bundle(outlier_bundle[0], tmp_path / "m.ursa")
    result = CliRunner().invoke(
        app, ["export", str(bundle), "--onnx", "--int8", "--calibrate", str(outlier_bundle[1])]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    record = read_bundle(bundle).metrics["export"]["int8"]
    shipped = record["method"]
    # static is refused; the sensitivity pass and qat both keep the outlier path in float
    # and agree on every image, so the faster of the two (measured side by side) ships.
    assert shipped in ("sensitivity", "qat") and set(record["float_nodes"]) >= OUTLIER_PATH
    other = "qat" if shipped == "sensitivity" else "sensitivity"
    assert f"model.int8.onnx ({shipped}, " in output and "nodes kept in float" in output
    assert "int8 agrees with fp32 on 24/24" in output and "McNemar exact p = " in output
    assert "model time, one image: int8 " in output and f"{shipped} took " in output
    assert "also tried: static, refused (drop " in output
    one = rf"{other} with \d+ nodes in float, accepted \(drop "
    several = rf"{other}, \d+ models with \d+-\d+ nodes in float, \d+ accepted \(agreement "
    assert re.search(rf"also tried: ({one}|{several})", output), output
    # Each method's models in the order made (a pass can make several: its float prefixes).
    methods = [entry["method"] for entry in record["tried"]]
    assert methods[0] == "static" and other in methods
    assert methods == sorted(methods, key=["static", "sensitivity", "qat"].index)
    assert record["tried"][0]["accepted"] is False and record["gate"]["accepted"] is True
    # static's all-int8 model is not judged again as the sensitivity pass's first.
    assert all(e["float_nodes"] for e in record["tried"] if e["method"] == "sensitivity")
    assert record["tried"][0]["float_nodes"] == 0 and record["tried"][1]["float_nodes"] > 0
    assert record["tried"][0]["seconds"] >= 0 and record["build_seconds"] > 0
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
    with pytest.raises(
        ConfigError, match=r"int8 methods 'entropy': use some of static, sensitivity, qat"
    ):
        export_for_serving(
            tiny_served[0],
            int8=True,
            calibrate=tiny_served[1],
            methods=("entropy",),  # type: ignore[arg-type]
        )


def test_without_pytorch_qat_is_left_out_and_the_refusal_says_so(
    outlier_bundle: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from ursa.export import deploy

    bundle = copy_bundle(outlier_bundle[0], tmp_path / "m.ursa")
    export_for_serving(bundle, onnx=True)
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "torch" else real(name, *args, **kwargs)  # type: ignore[arg-type]

    # A serving install: ursa[serve] without PyTorch.
    monkeypatch.setattr(deploy.importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"the qat method .* cannot run: it needs PyTorch"):
        export_for_serving(bundle, onnx=False, int8=True, calibrate=outlier_bundle[1],
                           methods=("qat",))  # fmt: skip
    with pytest.raises(ExportError) as caught:
        export_for_serving(bundle, onnx=False, int8=True, calibrate=outlier_bundle[1],
                           methods=("static", "qat"))  # fmt: skip
    message = str(caught.value)
    assert message.startswith("int8 model refused (static): ")
    assert (
        "the qat method (the quantization-aware fine-tune) was not tried: it needs pytorch "
        "(pip install 'ursa[train]')" in message.lower()
    )
    assert "Calibrate on more" in message
    assert INT8_NAME not in read_bundle(bundle).members


def test_a_failing_fine_tune_keeps_the_other_methods_models(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    source = read_bundle(tiny_served[0])
    bundle = tmp_path / "m.ursa"  # its ONNX model intact, its PyTorch weights not
    write_bundle(bundle, source.config, b"not safetensors", source.metrics,
                 extra={ONNX_NAME: source.read(ONNX_NAME)})  # fmt: skip
    result = export_for_serving(bundle, onnx=False, int8=True, calibrate=tiny_served[1],
                                max_drop=100.0, methods=("qat", "static"))  # fmt: skip
    assert result.int8 is not None and result.int8.method == "static"
    failed = [note for note in result.int8.notes if note.startswith("the qat method failed (")]
    assert len(failed) == 1 and "unreadable" in failed[0], result.int8.notes
    assert any(line.startswith("note: the qat method failed") for line in result.int8.lines())
    assert INT8_NAME in read_bundle(bundle).members
    with pytest.raises(ExportError, match=r"^no int8 model was made: the qat method failed"):
        export_for_serving(bundle, onnx=False, int8=True, calibrate=tiny_served[1],
                           methods=("qat",))  # fmt: skip


def _padded_network() -> tuple[object, int]:
    """A small network with timm's "same" padding, computed from the input's shape."""
    import torch
    from timm.layers import BatchNormAct2d, Conv2dSame
    from torch import nn

    torch.manual_seed(0)
    network = nn.Sequential(
        Conv2dSame(3, 16, 3, stride=2, bias=False),
        BatchNormAct2d(16, act_layer=nn.ReLU6),  # EfficientNet-Lite's conv, BN, ReLU6
        Conv2dSame(16, 16, 3, stride=2, groups=16, bias=False),
        BatchNormAct2d(16, act_layer=nn.ReLU6),
        nn.Conv2d(16, 8, 1, bias=False),
        BatchNormAct2d(8, apply_act=False),  # a linear bottleneck
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 3.0)
    return network.eval(), 33  # an odd side ("same" pads 1 on each side at both strides)


def _colour_images(count: int, side: int, seed: int) -> np.ndarray:
    """Noisy images of one random colour each: inputs whose logits differ from image to image."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-2.0, 2.0, size=(count, 3, 1, 1))
    return (colours + 0.5 * rng.normal(size=(count, 3, side, side))).astype(np.float32)


def test_shape_arithmetic_stays_float(tmp_path: Path) -> None:
    import torch

    from ursa.export.onnx import torch_to_onnx

    network, side = _padded_network()
    fp32 = torch_to_onnx(network, side, static_pads=False)  # the pads computed at run time
    inputs = _colour_images(16, side, seed=0)
    with Quantizer(fp32, inputs) as quantizer:
        found = shape_nodes(onnx.load(str(quantizer._prepared)).graph)
        int8 = quantizer.build("static").model
    kinds = {node.name: node.op_type for node in onnx.load_from_string(fp32).graph.node}
    assert {"Shape", "Concat"} <= {kinds.get(name) for name in found}
    graph = onnx.load_from_string(int8).graph
    producer = {output: node.name for node in graph.node for output in node.output}
    quantized = [
        producer.get(node.input[0])
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] in producer
    ]
    assert quantized and not set(quantized) & found  # only image data gets Q/DQ pairs
    with torch.no_grad():
        reference = network(torch.from_numpy(inputs)).numpy()
    assert relative_error(reference, logits(session_for(int8), inputs)) < 0.05


@pytest.mark.parametrize(("side", "first_pads"), [(32, [0, 0, 1, 1]), (33, [1, 1, 1, 1])])
def test_same_padding_computed_at_run_time_is_folded_into_the_convolutions(
    side: int, first_pads: list[int]
) -> None:
    import torch

    from ursa.export.onnx import torch_to_onnx

    network, _ = _padded_network()
    dynamic = torch_to_onnx(network, side, static_pads=False)
    folded = torch_to_onnx(network, side)
    kinds = [node.op_type for node in onnx.load_from_string(dynamic).graph.node]
    assert kinds.count("Pad") == 2 and "Shape" in kinds
    graph = onnx.load_from_string(folded).graph
    onnx.checker.check_model(onnx.load_from_string(folded))
    assert {node.op_type for node in graph.node} == {
        "Conv", "Clip", "Constant", "GlobalAveragePool", "Flatten", "Gemm"
    }  # fmt: skip  # Constant: the Clips' bounds
    pads = [
        list(attribute.ints)
        for node in graph.node
        for attribute in node.attribute
        if node.op_type == "Conv" and attribute.name == "pads"
    ]
    # "Same" padding (top, left, bottom, right): on an even side the one extra row and
    # column go after, as TensorFlow pads.
    assert pads[0] == first_pads
    for count in (1, 3):  # the batch axis stays dynamic
        inputs = _colour_images(count, side, seed=4)
        with torch.no_grad():
            reference = network(torch.from_numpy(inputs)).numpy()
        assert np.allclose(logits(session_for(folded), inputs), reference, atol=1e-5)
    assert fold_static_pads(folded) == folded  # nothing left to fold


def _pad_conv_model(side: int | str, pad_is_an_output: bool) -> bytes:
    """Pad (widths from a Constant node, not an initializer) then Conv, by hand."""
    from onnx import TensorProto, helper, numpy_helper

    widths = np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64)  # top 0, left 1, bottom 1, right 2
    weight = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["widths"], value=numpy_helper.from_array(widths)),
        helper.make_node("Pad", ["input", "widths"], ["padded"], name="pad"),
        helper.make_node("Conv", ["padded", "weight"], ["logits"], name="conv"),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)]
    if pad_is_an_output:
        outputs.append(helper.make_tensor_value_info("padded", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "pad-conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, side, side])],
        outputs, [numpy_helper.from_array(weight, "weight")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_only_pads_that_can_be_fixed_are_folded() -> None:
    inputs = _colour_images(2, 8, seed=5)
    model = _pad_conv_model(8, pad_is_an_output=False)
    folded = fold_static_pads(model)
    graph = onnx.load_from_string(folded).graph
    assert [node.op_type for node in graph.node] == ["Conv"]
    assert [list(a.ints) for a in graph.node[0].attribute if a.name == "pads"] == [[0, 1, 1, 2]]
    assert np.allclose(logits(session_for(folded), inputs), logits(session_for(model), inputs))
    # Left as they are: a Pad whose output the graph returns, and a graph whose height and
    # width are not fixed (the widths could differ from image to image).
    for unchanged in (_pad_conv_model(8, pad_is_an_output=True), _pad_conv_model("h", False)):
        assert fold_static_pads(unchanged) == unchanged


def test_the_sensitivity_pass_ranks_a_convolution_with_its_pad_and_activation() -> None:
    from ursa.export.onnx import torch_to_onnx

    network, side = _padded_network()
    inputs = _colour_images(16, side, seed=0)
    fp32 = torch_to_onnx(network, side, static_pads=False)  # with its Pad nodes
    with Quantizer(fp32, inputs) as quantizer:
        groups = quantizer.candidate_groups()
        kinds = {node.name: node.op_type for node in quantizer._graph.node}
        shapes = [tuple(kinds[name] for name in group) for group in groups]
        # Both ReLU6 convolutions come with their Pad and Clip; the linear bottleneck alone.
        assert shapes.count(("Pad", "Conv", "Clip")) == 2
        assert ("Conv",) in shapes
        assert sorted(name for group in groups for name in group) == sorted(
            quantizer.candidate_nodes()
        )
        # Quantized with its ReLU6, the depthwise convolution's output is rounded over
        # 0..6 (as in the whole int8 model); without it, over its raw range: more error.
        reference = logits(session_for(fp32), inputs)
        grouped = groups[1]
        with_clip = quantizer.quantize(only=grouped)
        without = quantizer.quantize(only=grouped[:-1])
        assert relative_error(reference, logits(session_for(with_clip), inputs)) < 0.5 * (
            relative_error(reference, logits(session_for(without), inputs))
        )


def test_nodes_kept_in_float_keep_float_weights_at_run_time() -> None:
    import onnxruntime as ort

    from ursa.export.onnx import torch_to_onnx

    def without_weight_rounding(model: bytes) -> np.ndarray:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(
            model, options, ["CPUExecutionProvider"],
            disabled_optimizers=["WeightBiasQuantization"],
        )  # fmt: skip
        return logits(session, inputs)

    network, side = _padded_network()
    inputs = _colour_images(16, side, seed=3)
    fp32 = torch_to_onnx(network, side)
    with Quantizer(fp32, inputs) as quantizer:
        # The linear bottleneck's convolution in float; the classifier always is.
        model = quantizer.quantize(exclude=["/4/Conv"])
        as_written = quantizer._target.read_bytes()  # ONNX Runtime's quantizer's own output
    onnx.checker.check_model(onnx.load_from_string(model))
    # Left as the quantizer wrote it, the session's optimiser rounds the float weights of
    # the convolution (between int8 nodes) to per-tensor int8; with a private per-channel
    # DequantizeLinear, the model computes what it says, optimised as it is in serving.
    written = logits(session_for(as_written), inputs)
    assert relative_error(without_weight_rounding(as_written), written) > 1e-4
    kept = logits(session_for(model), inputs)
    assert np.allclose(kept, without_weight_rounding(model), rtol=1e-5, atol=1e-5)
    assert np.allclose(kept, without_weight_rounding(as_written), rtol=1e-5, atol=1e-5)
    graph = onnx.load_from_string(model).graph
    copies = [node for node in graph.node if node.name.endswith("_float_input_DequantizeLinear")]
    readers = {name: node.name for node in graph.node for name in node.input}
    # The convolution's copy only: the classifier's output is the logits, not rounded.
    assert [readers[node.output[0]] for node in copies] == ["/4/Conv"]
    read = set(readers) | {output.name for output in graph.output}
    assert all(
        node.output[0] in read for node in graph.node if node.op_type == "DequantizeLinear"
    )  # the DequantizeLinear the copy replaced is gone


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_the_fake_quantized_network_predicts_what_onnx_runtime_int8_gives(
    weight_bits: int,
) -> None:
    import torch

    from ursa.core.cpu import int8_kernels
    from ursa.export.onnx import torch_to_onnx

    if weight_bits == 8 and int8_kernels() != "exact":
        pytest.skip("8-bit weights saturate in this CPU's int8 kernels (x86 without VNNI)")
    network, side = _padded_network()
    calibration, inputs = _colour_images(32, side, seed=1), _colour_images(16, side, seed=2)
    model = torch_to_onnx(network, side)
    with Quantizer(model, calibration, weight_bits=weight_bits) as quantizer:
        int8 = logits(session_for(quantizer.quantize()), inputs)
    with torch.no_grad():
        fp32 = network(torch.from_numpy(inputs)).numpy()
    activations, remove = instrument(network, weight_bits)
    activations.start_observing()
    with torch.no_grad():
        network(torch.from_numpy(calibration))
    activations.stop_observing()
    with torch.no_grad():
        simulated = network(torch.from_numpy(inputs)).numpy()
    remove()
    # The simulation is nearer ONNX Runtime's int8 than the fp32 model is, by far.
    assert relative_error(int8, simulated) < 0.25 * relative_error(int8, fp32)
    with torch.no_grad():  # and removing it gives the plain network back
        assert np.array_equal(network(torch.from_numpy(inputs)).numpy(), fp32)


def test_the_quantization_aware_fine_tune_moves_the_weights_and_leaves_a_plain_network(
    tiny_served: tuple[Path, Path],
) -> None:
    from torch import nn
    from torch.nn.utils import parametrize

    from ursa.export.model import Model

    bundle = read_bundle(tiny_served[0])
    train, _, _ = calibration_split(bundle, tiny_served[1])
    calibration, _, _ = _inputs(tiny_served[0], tiny_served[1])
    source = QatSource(bundle, train, QatSettings(images=16, epochs=1, batch_size=8, lr=1e-3))
    tuned = fine_tune_for_int8(source, calibration)
    before = Model(bundle).network.state_dict()
    after = tuned.state_dict()
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[key].numpy(), after[key].numpy()) for key in before)
    for module in tuned.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert not parametrize.is_parametrized(module)


def _try(bundle_path: Path, folder: Path, methods: tuple[str, ...], stop_early: bool,
         notes: list[str] | None = None) -> list[tuple[Any, Any]]:  # fmt: skip
    """``try_methods`` as the export calls it, on the bundle's model and folder."""
    from ursa.export.deploy import try_methods
    from ursa.export.gate import GateRule
    from ursa.export.onnx import export_onnx
    from ursa.export.quantize import top1

    bundle = read_bundle(bundle_path)
    fp32, _ = export_onnx(bundle)
    calibration, valid, labels = _inputs(bundle_path, folder)
    source = QatSource(bundle, calibration_split(bundle, folder)[0])
    with Quantizer(fp32, calibration, qat=source) as quantizer:
        return try_methods(quantizer, methods, labels, top1(session_for(fp32), valid),  # type: ignore[arg-type]
                           valid, GateRule(), [] if notes is None else notes,
                           stop_early=stop_early)  # fmt: skip


def test_trying_the_methods_stops_at_an_all_int8_model_that_agrees_unless_told_not_to(
    tiny_served: tuple[Path, Path], outlier_bundle: tuple[Path, Path]
) -> None:
    # The tiny model's static int8 agrees with fp32 on every image: nothing after it runs.
    (only,) = _try(*tiny_served, ("static", "sensitivity"), stop_early=True)
    assert only[0].method == "static" and only[1].agreement == 1.0
    every = _try(*tiny_served, ("static", "sensitivity"), stop_early=False)
    assert every[0][0].model == only[0].model and len(every) > 1
    assert all(c.float_nodes for c, _ in every[1:])  # static's model is not judged twice
    # qat's all-int8 model agrees too: its sensitivity pass is never run.
    (qat,) = _try(*tiny_served, ("qat",), stop_early=True)
    assert qat[0].method == "qat" and qat[0].float_nodes == () and qat[1].agreement == 1.0
    # The other way round: static's model is the sensitivity pass's first, judged once.
    models = _try(*outlier_bundle, ("sensitivity", "static"), stop_early=True)
    assert [c.method for c, _ in models] == ["sensitivity"] * len(models)
    assert models[0][0].float_nodes == () and not models[0][1].accepted
    assert len({c.model for c, _ in models}) == len(models) > 2
    seconds = [c.seconds for c, _ in models]  # in the pass, up to each model
    assert seconds == sorted(seconds) and seconds[0] > 0
    fp32 = read_bundle(tiny_served[0]).read(ONNX_NAME)
    unknown = r"int8 method 'entropy': use one of static, "
    with Quantizer(fp32, _inputs(*tiny_served)[0]) as q, pytest.raises(ConfigError, match=unknown):
        q.models("entropy")  # type: ignore[arg-type]  # said at the call, not when iterated


def test_a_fine_tune_that_fails_part_way_keeps_the_models_it_made(
    tiny_served: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(self: Quantizer) -> list[tuple[str, ...]]:
        raise RuntimeError("out of memory")  # as a pass on a large model can

    # qat's all-int8 model is made before its sensitivity pass ranks the groups.
    monkeypatch.setattr(Quantizer, "candidate_groups", fails)
    notes: list[str] = []
    (made,) = _try(*tiny_served, ("qat",), stop_early=False, notes=notes)
    assert made[0].method == "qat" and made[0].float_nodes == ()
    assert notes == [
        "the qat method failed part-way (out of memory); the model it made before is kept"
    ]


def _conv_chain_model(side: int | str) -> bytes:
    """Conv 3→4 (3×3) → Relu → depthwise Conv (3×3) → Conv 4→2 (1×1) → pool → classifier."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in (
            ("w1", (4, 3, 3, 3)), ("dw", (4, 1, 3, 3)), ("w2", (2, 4, 1, 1)), ("fc", (2, 3))
        )
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "dw"], ["d1"], name="depthwise", group=4, pads=[1] * 4),
        helper.make_node("Conv", ["d1", "w2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="classifier"),
    ]
    graph = helper.make_graph(
        nodes, "conv-chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_each_groups_work_is_its_multiply_adds_or_its_output() -> None:
    """What the sensitivity ranking divides a group's damage by (a power of) its share."""
    work = {  # one 8×8 image: output elements × the inputs each one sums
        "conv1": 4 * 8 * 8 * (3 * 3 * 3),
        "relu": 4 * 8 * 8,  # another node: its output elements
        "depthwise": 4 * 8 * 8 * (1 * 3 * 3),  # one input channel per output channel
        "conv2": 2 * 8 * 8 * 4,
        "pool": 2,
        "flatten": 2,
    }
    images = _colour_images(4, 8, seed=1)
    with Quantizer(_conv_chain_model(8), images) as quantizer:
        groups = quantizer.candidate_groups()
        shares = quantizer.group_costs(groups)
    assert ("conv1", "relu") in groups and ("conv2",) in groups  # the ReLU with its conv
    assert {name for group in groups for name in group} >= {"depthwise", "conv1", "conv2"}
    total = sum(work[name] for group in groups for name in group)
    assert shares == pytest.approx(
        {group: sum(work[name] for name in group) / total for group in groups}
    )
    # Height and width not fixed: the convolutions' shapes are unknown (the pool's and the
    # flatten's are not), so each convolution's group counts as the mean of the known ones.
    with Quantizer(_conv_chain_model("side"), images) as quantizer:
        known = [("pool",), ("flatten",), ("pool", "flatten")]  # work 2, 2 and 4
        shares = quantizer.group_costs([("conv1", "relu"), ("conv2",), *known])
        mean = (2 + 2 + 4) / 3
        total = 2 * mean + 8
        assert shares == pytest.approx(
            {("conv1", "relu"): mean / total, ("conv2",): mean / total, ("pool",): 2 / total,
             ("flatten",): 2 / total, ("pool", "flatten"): 4 / total}
        )  # fmt: skip
        # None known: all alike.
        unknown = [("conv1", "relu"), ("depthwise",), ("conv2",)]
        assert quantizer.group_costs(unknown) == pytest.approx(dict.fromkeys(unknown, 1 / 3))
