"""ONNX export with a parity check against PyTorch, and rewriting a bundle with new members.

The exported graph has a dynamic batch axis (input ``input`` of shape
(N, 3, H, W) float32, output ``logits`` of shape (N, C)). Before it is added
to a bundle, ONNX Runtime and PyTorch run the same sample images and must
agree: every logit within ``atol + rtol · |torch logit|`` and the top-1 class
equal on every image. Otherwise :class:`ExportError` gives the numbers.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ursa.core.bundle import (
    INPUT_NAME,
    OUTPUT_NAME,
    REQUIRED_MEMBERS,
    Bundle,
    read_bundle,
    write_bundle,
)
from ursa.core.errors import UrsaError
from ursa.core.imageio import ImageSource
from ursa.core.preprocess import PreprocessConfig, prepare_input, preprocess

log = logging.getLogger(__name__)

#: Opset 17 is understood by every ONNX Runtime from 1.14 on.
OPSET = 17
#: fp32 ONNX Runtime vs PyTorch: kernels differ in summation order, nothing more.
PARITY_ATOL = 1e-3
PARITY_RTOL = 1e-3


class ExportError(UrsaError):
    """An export that failed its check (parity or accuracy) and was not written."""


@dataclass(frozen=True)
class ParityReport:
    """How closely ONNX Runtime reproduces PyTorch on the sample images."""

    images: int
    max_abs_diff: float
    tolerance: str
    top1_agree: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_inputs(
    config: PreprocessConfig, sources: Sequence[ImageSource] = (), count: int = 8, seed: int = 0
) -> np.ndarray:
    """(N, 3, H, W) inputs for parity checks: ``sources`` when given, else synthetic images.

    Synthetic images are smooth colour gradients with noise (deterministic in
    ``seed``), unlike anything that would give tied logits.
    """
    if sources:
        return np.stack([prepare_input(source, config) for source in sources])
    rng = np.random.default_rng(seed)
    images = []
    side = max(config.size, 64)
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    for _ in range(count):
        base = rng.uniform(0, 255, size=3)
        tilt = rng.uniform(-120, 120, size=3)
        pixels = base + tilt * ramp[None, :, None] + rng.normal(0, 30, size=(side, side, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
        images.append(preprocess(image, config))
    return np.stack(images)


def torch_to_onnx(network: Any, size: int, *, static_pads: bool = True) -> bytes:
    """Trace ``network`` (eval mode, CPU) to ONNX bytes with a dynamic batch axis.

    ``static_pads``: fold "same" padding computed at run time into its convolutions
    (:func:`fold_static_pads`).
    """
    import torch

    example = torch.zeros(2, 3, size, size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is stable and fast for these CNNs; its deprecation
        # notice is not for the user of ursa.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works too
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return fold_static_pads(buffer.getvalue()) if static_pads else buffer.getvalue()


def graph_readers(graph: Any) -> dict[str, list[Any]]:
    """The nodes of an ONNX ``graph`` that read each tensor, by tensor name."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def replace_nodes(graph: Any, nodes: Sequence[Any]) -> None:
    """Make ``nodes`` (in order; some may be ``graph``'s own) the nodes of ``graph``.

    Copied first: clearing the graph's node list would take its own nodes with it.
    """
    import onnx

    copies = []
    for node in nodes:
        copies.append(onnx.NodeProto())
        copies[-1].CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def fold_static_pads(model: bytes) -> bytes:
    """``model`` with each run-time ``Pad`` before a ``Conv`` folded into the Conv's pads.

    timm's TF-ported models (EfficientNet-Lite among them) compute their "same" padding
    from the input's shape at run time: ``Shape``, ``Gather``, arithmetic, ``Concat``, then
    a ``Pad`` in front of the convolution. The exported graph's height and width are
    fixed (only the batch is dynamic), so the widths are constants: they are computed
    here once, each ``Pad`` (zeros, on the height and width only) becomes the ``pads``
    of the ``Conv`` that is its only reader, and the nodes left with no reader (that
    arithmetic, and any other dead node) are removed. Measured on ``benchmarks/int8.py``'s
    models (2-core Xeon, two threads), the ``Pad`` nodes took 0.9 of fp32's 6.4 ms of
    kernel time; in the int8 model, with the ``DequantizeLinear``/``QuantizeLinear``
    around them, about 2 of its 5.6 ms.
    A model with no such ``Pad``, with other inputs than one float image of fixed
    height and width, with subgraphs, or that ONNX Runtime cannot run, comes back
    unchanged.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    constants = {tensor.name for tensor in graph.initializer}
    feeds = [entry for entry in graph.input if entry.name not in constants]
    if len(feeds) != 1 or any(
        attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for node in graph.node
        for attribute in node.attribute
    ):
        return model  # one image input, and no subgraphs whose reads the pruning would miss
    tensor_type = feeds[0].type.tensor_type
    shape = [int(dim.dim_value) for dim in tensor_type.shape.dim[1:]]
    if tensor_type.elem_type != onnx.TensorProto.FLOAT or not shape or min(shape) <= 0:
        return model  # the widths can be computed once only for a fixed float image shape
    graph_outputs = {output.name for output in graph.output}
    readers = graph_readers(graph)
    chosen = []  # (Pad, Conv)
    for node in graph.node:
        if node.op_type != "Pad":
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        following = readers.get(node.output[0], [])
        if (
            node.output[0] not in graph_outputs
            and attributes.get("mode", b"constant") in (b"constant", "constant")
            and len(node.input) >= 2
            and node.input[1] not in constants
            and (len(node.input) < 4 or not node.input[3])  # no axes input
            and len(following) == 1
            and following[0].op_type == "Conv"
            and following[0].input[0] == node.output[0]
            and all(a.name != "auto_pad" or a.s in (b"", b"NOTSET") for a in following[0].attribute)
        ):
            chosen.append((node, following[0]))
    if not chosen:
        return model
    # The widths (and fill values), computed by the graph itself at two batch sizes.
    probe = onnx.load_from_string(model)
    wanted = [pad.input[1] for pad, _ in chosen] + [
        pad.input[2] for pad, _ in chosen if len(pad.input) > 2 and pad.input[2]
    ]
    known = {output.name for output in probe.graph.output}
    for name in dict.fromkeys(wanted):
        if name not in known:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    values = []
    try:
        session = ort.InferenceSession(
            probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = [output.name for output in session.get_outputs()]
        for batch in (1, 2):
            outputs = session.run(None, {feeds[0].name: np.zeros([batch, *shape], np.float32)})
            values.append(dict(zip(names, outputs, strict=True)))
    except Exception as error:  # a graph ONNX Runtime cannot run here is left as it is
        log.info("pads left as they are: the graph did not run for the fold (%s)", error)
        return model
    removed = set()
    for pad, conv in chosen:
        widths = values[0][pad.input[1]]
        fill = values[0][pad.input[2]] if len(pad.input) > 2 and pad.input[2] else 0.0
        if not np.array_equal(widths, values[1][pad.input[1]]) or np.any(np.asarray(fill) != 0):
            continue  # depends on the batch, or pads with something else than zeros
        widths = [int(width) for width in np.asarray(widths).reshape(-1)]
        if len(widths) != 8 or any(widths[i] for i in (0, 1, 4, 5)) or min(widths) < 0:
            continue  # only height and width, and no cropping
        existing = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        folded = [
            existing[0] + widths[2], existing[1] + widths[3],
            existing[2] + widths[6], existing[3] + widths[7],
        ]  # fmt: skip
        for index, attribute in enumerate(conv.attribute):
            if attribute.name == "pads":
                del conv.attribute[index]
                break
        conv.attribute.append(helper.make_attribute("pads", folded))
        conv.input[0] = pad.input[0]
        removed.add(pad.output[0])
    if not removed:
        return model
    # Drop what no longer has a reader (the Pads, then the arithmetic behind them).
    nodes = [
        node for node in graph.node if not (node.op_type == "Pad" and node.output[0] in removed)
    ]
    while True:
        read = {name for node in nodes for name in node.input} | graph_outputs
        kept = [node for node in nodes if any(name in read for name in node.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    replace_nodes(graph, nodes)
    read = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)
    produced = {name for node in graph.node for name in node.output}
    stale = [info for info in graph.value_info if info.name not in produced]
    for info in stale:
        graph.value_info.remove(info)
    return proto.SerializeToString()


def ort_logits(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run ONNX bytes on the CPU provider: (N, 3, H, W) → (N, C)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: inputs})[0])


def check_parity(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    atol: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
) -> ParityReport:
    """Compare (N, C) logits; :class:`ExportError` with the numbers when they disagree."""
    tolerance = f"|onnx - torch| <= {atol:g} + {rtol:g}·|torch|, top-1 equal on every image"
    if reference.shape != candidate.shape:
        raise ExportError(
            f"ONNX parity check failed: output shape {candidate.shape}, PyTorch {reference.shape}"
        )
    difference = np.abs(candidate.astype(np.float64) - reference)
    allowed = atol + rtol * np.abs(reference)
    agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
    report = ParityReport(
        images=len(reference),
        max_abs_diff=float(difference.max(initial=0.0)),
        tolerance=tolerance,
        top1_agree=int(agree.sum()),
    )
    outside = int((difference > allowed).sum())
    if outside or not agree.all():
        raise ExportError(
            f"ONNX parity check failed on {report.images} sample images: max |difference| "
            f"{report.max_abs_diff:.3g} ({outside} logits outside {tolerance}); top-1 agrees on "
            f"{report.top1_agree}/{report.images}. The model was not exported; report this "
            f"with the architecture name"
        )
    return report


def export_onnx(bundle: Bundle, samples: Sequence[ImageSource] = ()) -> tuple[bytes, ParityReport]:
    """The bundle's PyTorch model as checked ONNX bytes, and the parity numbers.

    ``samples`` are images for the parity check (synthetic ones when empty).
    Needs PyTorch (``ursa[train]``).
    """
    from ursa.export.model import Model

    model = Model(bundle)
    config = bundle.config.preprocess
    onnx_bytes = torch_to_onnx(model.network, config.size)
    inputs = sample_inputs(config, samples)
    report = check_parity(model.logits(inputs), ort_logits(onnx_bytes, inputs))
    # The dynamic batch axis: one image alone must give the same answer as in a batch.
    check_parity(model.logits(inputs[:1]), ort_logits(onnx_bytes, inputs[:1]))
    log.info("ONNX parity: %s", report)
    return onnx_bytes, report


def rewrite_bundle(
    bundle: Bundle, members: Mapping[str, bytes], metrics_update: Mapping[str, Any]
) -> Bundle:
    """Atomically rewrite ``bundle`` with ``members`` added (or replaced) and metrics merged."""
    with zipfile.ZipFile(bundle.path) as archive:
        extra = {
            name: archive.read(name)
            for name in bundle.members
            if name not in REQUIRED_MEMBERS and name not in members
        }
        weights = archive.read("model.safetensors")
    extra.update(members)
    metrics = json.loads(json.dumps(bundle.metrics))
    metrics.setdefault("export", {}).update(metrics_update)
    write_bundle(bundle.path, bundle.config, weights, metrics, extra=extra)
    return read_bundle(bundle.path)
