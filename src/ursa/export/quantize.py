"""int8 static quantization with ONNX Runtime, in methods tried cheapest first.

Activations are calibrated once on the user's own training images (min/max over
up to ``calibration_images`` of them, cached for every method); weights are
quantized per channel, on 8 bits where this CPU's int8 kernels are exact and on 7
elsewhere (:mod:`ursa.core.cpu`: x86 CPUs without VNNI saturate 8-bit products); the
format is QDQ (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8
kernels).

Never quantized, whatever the method: the nodes that compute shapes (:func:`shape_nodes`:
rounded pad widths shift feature maps) and the nodes that write the logits
(:func:`output_nodes`). What stays float stays float at run time too
(:func:`keep_float_weights`: ONNX Runtime's session optimiser would otherwise round the
weights of float convolutions between int8 nodes to per-tensor int8).

Methods (:data:`METHODS`, in the order ``ursa export --int8`` tries them):

``static``
    every other quantizable node int8.
``sensitivity``
    the few nodes whose quantization moves the logits most stay in float,
    everything else int8. Each candidate (a node, or a convolution with the ``Pad``
    before it and the ReLU6 after it: :meth:`Quantizer.candidate_groups`) is quantized
    *alone* (the rest float) on :data:`SENSITIVITY_IMAGES` calibration images and
    ranked by how far its logits move from fp32's (errors that several nodes share,
    such as one outlier tensor read by three, show up on each of them, which
    excluding one node at a time from the int8 model would hide), divided by the square
    root of its share of the candidates' multiply-adds, a proxy for its time in float
    (:data:`COST_POWER`, :meth:`Quantizer.group_costs`). Then the top 1, 2, … of the
    ranking (at most :func:`float_budget`) are kept in float, and each prefix whose
    int8 model came a tenth closer to fp32 than every shorter one is one of the
    method's models (:meth:`Quantizer.sensitivity_models`). Float rather than 16-bit
    activations: ONNX Runtime's CPU provider has int8 kernels only, so a 16-bit Q/DQ
    pair around a node leaves it a float node with two more ops.
``qat``
    a quantization-aware fine-tune of the bundle's weights (:mod:`ursa.export.qat`,
    PyTorch), then the sensitivity pass on the result, ranked against the original
    fp32 model's logits.

Each method's models are made one at a time (:meth:`Quantizer.models`), its all-int8
model first. The gate (:mod:`ursa.export.gate`) judges each on the validation split,
and :func:`ursa.export.gate.pick` chooses which accepted one ships: of those whose
top-1 agreement with fp32 reaches 98 %, the fastest (timed side by side); else the
one that agrees most. Each float node costs float time, so the model closest to fp32
is often not the one to ship.
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from collections.abc import Collection, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from ursa.core.bundle import INPUT_NAME
from ursa.core.cpu import int8_kernels, is_x86, weight_bits_for
from ursa.core.errors import ConfigError, DataError
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.export.gate import MAX_DROP_POINTS, GateResult, GateRule, judge
from ursa.export.onnx import ExportError, graph_readers, replace_nodes
from ursa.export.qat import QatSource

log = logging.getLogger(__name__)

__all__ = ["MAX_DROP_POINTS", "METHODS", "Int8Candidate", "QuantizeReport", "Quantizer"]

Method = Literal["static", "sensitivity", "qat"]
#: int8 methods, cheapest first.
METHODS: tuple[Method, ...] = ("static", "sensitivity", "qat")
#: Calibration images the sensitivity pass compares logits on (each of the ~100 candidates
#: of EfficientNet-Lite0 costs one quantization and one run of them: 30-50 s in all on 2 cores).
SENSITIVITY_IMAGES = 8


#: A float prefix is one of the sensitivity pass's models when its logit error is at most
#: this share of every shorter prefix's (a tenth closer to fp32).
FRONTIER_STEP = 0.9


#: The sensitivity ranking orders the groups by their logit error (each quantized alone)
#: divided by this power of their share of the work (:meth:`Quantizer.group_costs`). On
#: ``benchmarks/int8.py``'s digits model (docs/benchmarks.md, run O), ranked by the error
#: alone, agreement with fp32 reached 98 % with 33 nodes in float holding 45 % of the
#: multiply-adds, at 0.82-0.84x fp32's time; with the square root of the share, with 30
#: nodes holding 21 %, at 0.67-0.69x (ten alternating rounds, twice). The whole share
#: (power 1) puts first the groups that cost nearly nothing and change nearly nothing
#: (adds, late depthwise convolutions), and the budget ran out at 97.8 %.
COST_POWER = 0.5


def float_budget(candidates: int) -> int:
    """Most groups the sensitivity pass keeps in float: two fifths of them, at least 2.

    On ``benchmarks/int8.py``'s digits model (docs/benchmarks.md: 60 groups of one or two
    nodes), agreement with fp32 reached 98 % with 33 nodes in float (22 groups) ranked by
    logit error alone, and with 30 (23 groups) ranked per work (:data:`COST_POWER`); a
    fifth (12 groups) cannot get there.
    """
    return max(2, math.ceil(candidates * 2 / 5))


@dataclass(frozen=True)
class Int8Candidate:
    """One method's int8 model."""

    method: Method
    model: bytes
    float_nodes: tuple[str, ...] = ()
    """Nodes kept in float (the sensitivity pass's choice)."""
    seconds: float = 0.0
    """How long the method took to make it (set by :meth:`Quantizer.models`: for a pass's
    later models, the pass up to them; not the time the caller spent between models)."""
    logit_error: float | None = None
    """The sensitivity pass's measure (:func:`relative_error` on its probe images)."""


@dataclass(frozen=True)
class QuantizeReport:
    """The shipped int8 model: method, gate numbers, model time, and what was tried before."""

    method: Method
    calibration_images: int
    valid_images: int
    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    max_drop_points: float
    gate: GateResult
    float_nodes: tuple[str, ...]
    fp32_ms: float
    """Model alone, one image, median (ms), measured next to ``int8_ms``."""
    int8_ms: float
    build_seconds: float = 0.0
    """How long the shipped method took to make the shipped model (its own time up to it;
    the methods tried before it not included)."""
    tried: tuple[dict[str, Any], ...] = field(default=())
    """The other models tried (refused, agreeing less with fp32, or slower), in the order
    made: method, float nodes, gate numbers, seconds, and int8 ms where timed."""
    notes: tuple[str, ...] = field(default=())
    """Methods left out, and why (PyTorch missing, a fine-tune that failed)."""
    weight_bits: int = 8
    """Bits of the int8 weights: 8, or 7 (``reduce_range``: never saturates on any CPU)."""
    kernels: str = "exact"
    """What the gate's CPU computed (:func:`ursa.core.cpu.int8_kernels`): exact or
    saturating (or unknown)."""

    def lines(self) -> list[str]:
        """What ``ursa export --int8`` prints."""
        floats = f", {len(self.float_nodes)} nodes kept in float" if self.float_nodes else ""
        lines = [
            f"model.int8.onnx ({self.method}{floats}): {self.gate.summary()}; accepted "
            f"(rule: {self.gate.rule})",
            f"model time, one image: int8 {self.int8_ms:.2f} ms, fp32 {self.fp32_ms:.2f} ms "
            f"({self.int8_ms / max(self.fp32_ms, 1e-9):.2f}×); calibrated on "
            f"{self.calibration_images} images; {self.method} took {self.build_seconds:.0f} s",
            f"weights on {self.weight_bits} bits, checked on a CPU whose int8 kernels are "
            f"{self.kernels}"
            + (
                " (x86 without VNNI: serve it on such CPUs only after re-exporting with "
                "--int8-weights 7)"
                if self.weight_bits > 7 and self.kernels == "exact" and is_x86()
                else ""
            ),
        ]
        lines.extend(f"also tried: {summary}" for summary in tried_summaries(self.tried))
        lines.extend(f"note: {note}" for note in self.notes)
        return lines

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["gate"] = self.gate.to_dict()
        record["float_nodes"] = list(self.float_nodes)
        record["tried"] = list(self.tried)
        record["notes"] = list(self.notes)
        return record


def load_inputs(paths: Sequence[Path], config: PreprocessConfig) -> np.ndarray:
    """Decode and preprocess ``paths`` into one (N, 3, H, W) array."""
    return np.stack([prepare_input(path, config) for path in paths])


def logits(session: Any, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, C) logits of an ORT session on preprocessed (N, 3, H, W) inputs."""
    parts = [
        session.run(None, {INPUT_NAME: inputs[start : start + batch_size]})[0]
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(parts)


def accuracy(session: Any, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> float:
    """Top-1 accuracy of an ORT session on preprocessed inputs and integer labels."""
    top1 = logits(session, inputs, batch_size).argmax(axis=1)
    return float((top1 == labels).mean()) if len(labels) else 0.0


def check_drop(
    labels: Collection[int],
    fp32_top1: Collection[int],
    int8_top1: Collection[int],
    rule: GateRule | None = None,
    *,
    method: Method = "static",
) -> GateResult:
    """The gate's result, or :class:`ExportError` saying what was measured when it refuses."""
    result = judge(labels, fp32_top1, int8_top1, rule)
    if not result.accepted:
        raise refusal(method, result)
    return result


def refusal(
    name: str, result: GateResult, earlier: Sequence[dict[str, Any]] = (), note: str = ""
) -> ExportError:
    """The error for a refused int8 model (``name``: :func:`tried_name`): what was measured,
    the rule, and what was tried before it (one summary per method)."""
    before = "; ".join(tried_summaries(earlier))
    return ExportError(
        f"int8 model refused ({name}): {result.summary()} (rule: {result.rule})."
        + (f" Tried before it: {before}." if before else "")
        + (f" {note[0].upper()}{note[1:]}." if note else "")
        + " Calibrate on more, or more typical, images; the fp32 model.onnx is unaffected"
    )


def tried_name(entry: dict[str, Any]) -> str:
    """A tried model in a report line: its method, and its float nodes when it kept some."""
    floats = entry.get("float_nodes") or 0
    if not floats:
        return str(entry["method"])
    return f"{entry['method']} with {floats} node{'s' if floats != 1 else ''} in float"


def tried_summaries(tried: Sequence[dict[str, Any]]) -> list[str]:
    """One phrase per method of the tried models (:attr:`QuantizeReport.tried`), in order.

    A method that made one model gets its verdict and gate numbers; a pass that made
    several (its float prefixes) gets their range, each model being in the record. Entries
    written before the float nodes and times were recorded read as 0 nodes, untimed.
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for entry in tried:
        by_method.setdefault(entry["method"], []).append(entry)
    summaries = []
    for method, entries in by_method.items():
        if len(entries) == 1:
            entry = entries[0]
            verdict = "accepted" if entry["accepted"] else "refused"
            ms = entry.get("int8_ms")
            timed = f", int8 {ms:.2f} ms" if ms is not None else ""
            summaries.append(
                f"{tried_name(entry)}, {verdict} (drop {entry['drop_points']:.2f} points, "
                f"agreement {entry['agreement']:.1%}, p = {entry['p_value']:.3g}{timed}; "
                f"{entry['seconds']:.0f} s)"
            )
            continue
        nodes = [entry.get("float_nodes") or 0 for entry in entries]
        agreement = [entry["agreement"] for entry in entries]
        drops = [entry["drop_points"] for entry in entries]
        accepted = sum(bool(entry["accepted"]) for entry in entries)
        seconds = max(entry["seconds"] for entry in entries)  # the method's, to its last
        summaries.append(
            f"{method}, {len(entries)} models with {_span(nodes, '{}', '-')} nodes in float, "
            f"{accepted} accepted (agreement {_span(agreement, '{:.1%}')}, drop "
            f"{_span(drops, '{:.2f}')} points; {seconds:.0f} s)"
        )
    return summaries


def _span(values: Sequence[float], form: str, between: str = " to ") -> str:
    """``values``' range in a report line ("2-30", "96.7% to 100.0%"), or the one value."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}{between}{high}"


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """‖candidate − reference‖² / ‖reference − its mean‖² over (N, C) logits (0: identical)."""
    spread = float(((reference - reference.mean(axis=0)) ** 2).sum())
    return float(((candidate - reference) ** 2).sum()) / max(spread, 1e-12)


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed inputs, one at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._rows: Iterator[np.ndarray] = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {INPUT_NAME: row[None]}

    def rewind(self) -> None:  # pragma: no cover - only called by some calibrators
        raise NotImplementedError


class Quantizer:
    """Calibrates ``fp32_model`` once on ``calibration`` inputs, then builds int8 models.

    A context manager: it works in a temporary folder removed on exit.
    """

    def __init__(
        self,
        fp32_model: bytes,
        calibration: np.ndarray,
        qat: QatSource | None = None,
        *,
        reference: bytes | None = None,
        weight_bits: int | None = None,
    ) -> None:
        if len(calibration) == 0:
            raise DataError("int8 calibration needs at least one image")
        if weight_bits not in (None, 7, 8):
            raise ConfigError(f"int8 weight bits {weight_bits}: use 7 or 8")
        self.weight_bits = weight_bits_for(int8_kernels()) if weight_bits is None else weight_bits
        """8, or 7: ONNX Runtime's ``reduce_range`` (weights in −64…64), which no CPU's
        int8 kernels saturate (:mod:`ursa.core.cpu`). None: 8 where this CPU's int8
        kernels are exact, else 7."""
        self.fp32_model = fp32_model
        self.reference_model = fp32_model if reference is None else reference
        """The model whose logits the sensitivity pass compares with (the fp32 model)."""
        self.calibration = calibration
        self.qat_source = qat
        self._folder = tempfile.TemporaryDirectory(prefix="ursa-int8-")
        root = Path(self._folder.name)
        self._prepared = root / "prepared.onnx"
        self._cache = root / "calibration.json"
        self._target = root / "int8.onnx"
        source = root / "fp32.onnx"
        source.write_bytes(fp32_model)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # Folds constants and fills in shapes so that every Conv/Gemm gets quantized.
        quant_pre_process(str(source), str(self._prepared), skip_symbolic_shape=True)
        import onnx

        self._graph = onnx.load(str(self._prepared)).graph
        self._always_float = shape_nodes(self._graph) | output_nodes(self._graph)

    def __enter__(self) -> Quantizer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._folder.cleanup()

    def quantize(self, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> bytes:
        """QDQ int8 bytes: every quantizable node, or ``only`` these, less ``exclude``.

        The nodes that compute shapes (:func:`shape_nodes`) and write the logits
        (:func:`output_nodes`) are never quantized.
        """
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        quantize_static(
            str(self._prepared),
            str(self._target),
            _Calibration(self.calibration),  # read only on the first call; cached after
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=self.weight_bits == 7,
            nodes_to_exclude=sorted(self._always_float.union(exclude)),
            nodes_to_quantize=list(only) if only is not None else None,
            calibration_cache_path=self._cache,
        )
        return keep_float_weights(self._target.read_bytes())

    def candidate_nodes(self) -> list[str]:
        """Names of the nodes ONNX Runtime would quantize, in graph order."""
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        kinds = set(QDQRegistry) | set(QLinearOpsRegistry)
        return [
            node.name
            for node in self._graph.node
            if node.op_type in kinds and node.name and node.name not in self._always_float
        ]

    def build(self, method: Method) -> Int8Candidate:
        """The int8 model of ``method`` closest to fp32 (the last of :meth:`build_all`)."""
        return self.build_all(method)[-1]

    def build_all(self, method: Method) -> list[Int8Candidate]:
        """Every int8 model of ``method`` (:meth:`models`)."""
        return list(self.models(method))

    def models(self, method: Method) -> Generator[Int8Candidate, None, None]:
        """The int8 models of ``method``, made one at a time, fewest float nodes first.

        ``static`` makes one; ``sensitivity`` and ``qat`` make their all-int8 model, then
        each float prefix that came closer to fp32 (:meth:`sensitivity_models`), for the
        export to judge on the validation images and time. Made lazily, so that the
        export can stop at an all-int8 model that agrees (qat's sensitivity pass is then
        not run). Each model's ``seconds``: the time spent in the method up to it (not
        the caller's time between models).
        """
        if method not in METHODS:  # said now, not at the first model
            raise ConfigError(f"int8 method {method!r}: use one of {', '.join(METHODS)}")
        return self._timed(method)

    def _timed(self, method: Method) -> Generator[Int8Candidate, None, None]:
        if method == "static":
            made: Generator[Int8Candidate, None, None] = self._static()
        elif method == "sensitivity":
            made = self.sensitivity_models()
        else:
            made = self.qat_models()
        spent = 0.0  # inside the method only: not while the caller judges a model
        try:
            while True:
                started = time.perf_counter()
                candidate = next(made, None)
                spent += time.perf_counter() - started
                if candidate is None:
                    return
                yield replace(candidate, seconds=spent)
        finally:
            made.close()  # qat's: its inner Quantizer's folder goes now, not at collection

    def _static(self) -> Generator[Int8Candidate, None, None]:
        yield Int8Candidate("static", self.quantize())

    def candidate_groups(self) -> list[tuple[str, ...]]:
        """The candidate nodes in the units the sensitivity pass keeps in float, in graph order.

        A convolution goes with the ``Pad`` before it (timm's "same" padding) and with
        the ``Clip``/``Relu`` after it (ReLU6), where each is its only reader and a
        candidate too:

        * the ``Pad``: on ``benchmarks/int8.py``'s digits model, keeping one such
          depthwise convolution in float with its ``Pad`` still int8 took the logit error
          from 0.08 to 0.77, and with its ``Pad`` to 0.07;
        * the activation: quantized without it, a convolution's output is rounded over its
          raw range (−33 to 39 at the digits model's stem), not ReLU6's 0 to 6 as in the
          whole int8 model, where ONNX Runtime folds the activation into the convolution's
          output quantization; ranked alone, such convolutions looked several times more
          damaging than they are.
        """
        nodes = self.candidate_nodes()
        wanted = set(nodes)
        graph = self._graph
        producer = {output: node for node in graph.node for output in node.output}
        readers = graph_readers(graph)
        before: dict[str, str] = {}  # conv -> its Pad
        after: dict[str, str] = {}  # conv -> its activation
        for node in graph.node:
            if node.op_type != "Conv" or node.name not in wanted or not node.input:
                continue
            pad = producer.get(node.input[0])
            if (
                pad is not None
                and pad.op_type == "Pad"
                and pad.name in wanted
                and len(readers.get(pad.output[0], ())) == 1
            ):
                before[node.name] = pad.name
            following = readers.get(node.output[0], [])
            if (
                len(following) == 1
                and following[0].op_type in ("Clip", "Relu")
                and following[0].name in wanted
            ):
                after[node.name] = following[0].name
        absorbed = set(before.values()) | set(after.values())
        groups = []
        for name in nodes:
            if name in absorbed:
                continue
            group = [name]
            if name in before:
                group.insert(0, before[name])
            if name in after:
                group.append(after[name])
            groups.append(tuple(group))
        return groups

    def group_costs(self, groups: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
        """Each group's share of ``groups``' work, a proxy for its time in float, for one
        image: multiply-adds for a ``Conv``, ``ConvTranspose``, ``Gemm`` or ``MatMul``
        (output elements times the inputs each one sums; a ``ConvTranspose``, input
        elements times the outputs each one feeds), output elements for any other node.
        Shapes come from the prepared graph's shape inference (the first axis is the
        batch); a group with a node whose shape is unknown, or whose work comes to 0,
        counts as the mean of the others' (all alike when none is known).
        """
        from onnx import helper

        graph = self._graph
        shapes = {
            value.name: value.type.tensor_type.shape.dim
            for value in [*graph.value_info, *graph.output, *graph.input]
        }
        weights = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
        nodes = {node.name: node for node in graph.node}

        def dims_of(tensor: str) -> list[int] | None:
            dims = shapes.get(tensor)
            if not dims or not all(dim.HasField("dim_value") for dim in dims[1:]):
                return None
            return [dim.dim_value for dim in dims[1:]]

        def work(name: str) -> float | None:
            node = nodes.get(name)
            if node is None or not node.output:
                return None
            output = dims_of(node.output[0])
            if output is None:
                return None
            elements = math.prod(output)
            inputs = list(node.input)
            weight = weights.get(inputs[1]) if len(inputs) > 1 else None
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Conv" and weight is not None and len(weight) > 1:
                return float(elements * math.prod(weight[1:]))  # (out, in/group, kh, kw)
            if node.op_type == "ConvTranspose" and weight is not None and len(weight) > 1:
                source = dims_of(inputs[0])  # weight: (in, out/group, kh, kw)
                return None if source is None else float(math.prod(source) * math.prod(weight[1:]))
            if node.op_type == "Gemm" and weight is not None and len(weight) == 2:
                return float(elements * weight[1 if attributes.get("transB", 0) else 0])
            if node.op_type == "MatMul":
                if weight is not None and len(weight) >= 2:
                    return float(elements * weight[-2])  # (..., K, N)
                first = dims_of(inputs[0]) if inputs else None
                return None if not first else float(elements * first[-1])  # (..., M, K)
            return float(elements)

        costs: dict[tuple[str, ...], float | None] = {}
        for group in groups:
            parts = [work(name) for name in group]
            costs[group] = None if None in parts else sum(p for p in parts if p is not None)
        known = [cost for cost in costs.values() if cost]
        mean = statistics.fmean(known) if known else 1.0
        filled = {group: cost if cost else mean for group, cost in costs.items()}
        total = sum(filled.values())
        return {group: cost / total for group, cost in filled.items()}

    def sensitivity_models(
        self, method: Method = "sensitivity"
    ) -> Generator[Int8Candidate, None, None]:
        """The sensitivity pass's int8 models, fewest float nodes first (module notes).

        The first is the all-int8 model (the fastest, when it agrees enough: for qat, the
        fine-tuned network's often does). Then the top 1, 2, ... groups of the ranking (at
        most :func:`float_budget`) in float: kept are the prefixes whose logit error is at
        most :data:`FRONTIER_STEP` of every shorter prefix's, the all-int8 model's
        included. Which of them ships is the export's choice
        (:func:`ursa.export.gate.pick`): the least error is not the best trade, since each
        float node costs float time (on ``benchmarks/int8.py``'s fashion100 model in run K,
        docs/benchmarks.md, the least error took 17 nodes at 0.99x fp32's time; 6 nodes
        agreed with fp32 on 98.2 % of the validation images at 0.76x).
        """
        probe = self.calibration[:SENSITIVITY_IMAGES]
        reference = logits(session_for(self.reference_model), probe)
        everything = self.quantize()
        best_error = relative_error(reference, logits(session_for(everything), probe))
        yield Int8Candidate(method, everything, logit_error=best_error)
        groups = self.candidate_groups()
        damage = {}
        for group in groups:
            alone = logits(session_for(self.quantize(only=group)), probe)
            damage[group] = relative_error(reference, alone)
        # Damage per float time: a group's time in float grows with its multiply-adds.
        share = self.group_costs(groups)
        ranked = sorted(
            (group for group in groups if damage[group] > 0.0),
            key=lambda group: damage[group] / share[group] ** COST_POWER,
            reverse=True,
        )
        budget = float_budget(len(groups))
        # Prefixes of the ranking, not a walk that skips the nodes whose float copy makes
        # it worse: such a walk shipped int8 models that agreed with fp32 on 91-97 % of
        # the validation images where prefixes gave 97-99 % (measured before the Pad/Conv
        # pairing and the shape nodes' exclusion, which were much of why single nodes in
        # float could make the model worse).
        for count in range(1, min(budget, len(ranked)) + 1):
            kept = tuple(name for group in ranked[:count] for name in group)
            model = self.quantize(exclude=kept)
            error = relative_error(reference, logits(session_for(model), probe))
            log.info("int8 sensitivity: %d nodes in float, logit error %.3g", len(kept), error)
            if error <= FRONTIER_STEP * best_error:
                yield Int8Candidate(method, model, kept, logit_error=error)
                best_error = error

    def qat_models(self) -> Generator[Int8Candidate, None, None]:
        """The sensitivity pass's models on the network after a quantization-aware
        fine-tune (:mod:`ursa.export.qat`), compared with the original fp32 model."""
        if self.qat_source is None:
            raise ConfigError(
                "the qat int8 method fine-tunes the bundle's weights: give the Quantizer a "
                "QatSource (the bundle and its training images)"
            )
        import torch

        from ursa.export.onnx import check_parity, ort_logits, torch_to_onnx
        from ursa.export.qat import fine_tune_for_int8

        network = fine_tune_for_int8(self.qat_source, self.calibration, self.weight_bits)
        # The graph in the fp32 model's form (its pads folded at export, or computed at
        # run time in a bundle exported before), so that the methods' times compare.
        folded = not any(node.op_type == "Pad" for node in self._graph.node)
        size = self.qat_source.bundle.config.preprocess.size
        tuned = torch_to_onnx(network, size, static_pads=folded)
        probe = self.calibration[:SENSITIVITY_IMAGES]
        with torch.no_grad():
            expected = network(torch.from_numpy(probe)).numpy()
        check_parity(expected, ort_logits(tuned, probe))  # the fine-tuned network's export
        with Quantizer(
            tuned, self.calibration, reference=self.reference_model, weight_bits=self.weight_bits
        ) as inner:
            yield from inner.sensitivity_models("qat")


#: ONNX Runtime's operators whose float weights its ``WeightBiasQuantization`` optimiser
#: rounds to int8 between a dequantized input and a quantized output
#: (see :func:`keep_float_weights`).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm")


def keep_float_weights(model: bytes) -> bytes:
    """The QDQ model with its float convolutions left float at run time.

    ONNX Runtime's session optimiser (``WeightBiasQuantization``, on by default, in the
    browser's runtime too) rounds to *per-tensor* int8 the float weights of a ``Conv``,
    ``ConvTranspose`` or ``Gemm`` that reads a per-tensor ``DequantizeLinear`` and whose
    output goes (through a ``Relu`` or ``Clip`` or not) into a ``QuantizeLinear``: the
    nodes an int8 method keeps in float between int8 ones ran with coarser weights than
    the int8 nodes' per-channel ones. On ``benchmarks/int8.py``'s digits model, with
    four units kept in float, that took the logit error from 0.025 to 0.037; keeping one
    more unit in float could make the model worse. (The classifier, whose output is the
    logits, is not rounded.)

    Each such node gets its own copy of the ``DequantizeLinear`` with the same scale and
    zero point repeated per channel (``axis=1``): the same numbers, which the optimiser
    leaves alone (it rounds behind per-tensor inputs only); a ``DequantizeLinear`` left
    with no reader is removed. Not done, so still rounded: a node with one input
    channel (a per-channel scale of one value counts as per tensor) and inputs whose
    scale or zero point is not an initializer (ONNX Runtime's quantizer writes none).
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    readers = graph_readers(graph)

    def quantized_after(node: Any) -> bool:
        """Whether ``node``'s output goes, without branching, through Relu/Clip into a Q."""
        while node.output and len(following := readers.get(node.output[0], [])) == 1:
            node = following[0]
            if node.op_type == "QuantizeLinear":
                return True
            if node.op_type not in ("Relu", "Clip"):
                return False
        return False

    copies: list[tuple[Any, Any]] = []  # (its DequantizeLinear, the private copy)
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or not node.output:
            continue
        weight = initializers.get(node.input[1])
        source = producer.get(node.input[0])
        if (
            weight is None
            or weight.data_type != onnx.TensorProto.FLOAT
            or source is None
            or source.op_type != "DequantizeLinear"
            or len(source.input) < 3
            or not quantized_after(node)
        ):
            continue
        scale, zero = initializers.get(source.input[1]), initializers.get(source.input[2])
        if scale is None or zero is None or max([1, *scale.dims, *zero.dims]) != 1:
            continue  # per channel already, or not an initializer (see above)
        attributes = {
            attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute
        }
        shape = list(weight.dims)
        if node.op_type == "Conv":
            channels = shape[1] * int(attributes.get("group", 1))
        elif node.op_type == "ConvTranspose":
            channels = shape[0]
        else:  # Gemm: A is (N, K) unless transA
            if attributes.get("transA", 0):
                continue
            channels = shape[1] if attributes.get("transB", 0) else shape[0]
        if channels < 2:
            continue  # one value per channel is a per-tensor scale to the optimiser
        scale_value = numpy_helper.to_array(scale)
        stem = f"{node.output[0]}_float_input"  # tensor names are unique
        graph.initializer.extend(
            [numpy_helper.from_array(np.full(channels, scale_value.reshape(()),
                                             scale_value.dtype), f"{stem}_scale"),
             numpy_helper.from_array(np.full(channels, numpy_helper.to_array(zero).reshape(())),
                                     f"{stem}_zero_point")]
        )  # fmt: skip
        copy = helper.make_node(
            "DequantizeLinear",
            [source.input[0], f"{stem}_scale", f"{stem}_zero_point"],
            [stem],
            name=f"{stem}_DequantizeLinear",
            axis=1,
        )
        node.input[0] = stem
        copies.append((source, copy))
    if not copies:
        return model
    read = {name for node in graph.node for name in node.input} | {
        output.name for output in graph.output
    }
    after: dict[str, list[Any]] = {}  # each copy right after the node it copies: in order
    for source, copy in copies:
        after.setdefault(source.output[0], []).append(copy)
    nodes = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] in read:
            nodes.append(node)
        nodes.extend(after.get(node.output[0], ()) if node.output else ())
    replace_nodes(graph, nodes)
    return proto.SerializeToString()


#: The inputs of these operators that are shapes, sizes or indices, not image data.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Pad": (1, 2, 3),
    "Reshape": (1,),
    "Slice": (1, 2, 3, 4),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
}


def output_nodes(graph: Any) -> set[str]:
    """Names of the nodes that write the graph's outputs (the classifier): kept in float.

    Quantized, they would round the logits to 256 levels of their range (a step of
    about 0.1 on a fine-tuned model), which swaps the top two classes of the images
    the model is least sure of; in float they cost one small matrix product.
    """
    outputs = {output.name for output in graph.output}
    return {node.name for node in graph.node if outputs.intersection(node.output)}


def shape_nodes(graph: Any) -> set[str]:
    """Names of the nodes that compute only shapes, pads or indices, back to each ``Shape``.

    ONNX Runtime's quantizer would put 8-bit Q/DQ pairs on their float arithmetic too.
    In timm's TF-ported models ("same" padding computed from the input's shape) that
    rounds the pad widths, which a ``Cast`` then truncates: a pad of 1 can become 0 and
    shift every feature map after a stride-2 convolution by a pixel. On
    ``benchmarks/int8.py``'s serving model this alone took agreement with fp32 from 96 %
    to 89 % (logit error 0.019 → 0.107).
    """
    producer = {output: node for node in graph.node for output in node.output}
    found: set[str] = set()
    pending = [
        node.input[index]
        for node in graph.node
        for index in SHAPE_INPUTS.get(node.op_type, ())
        if index < len(node.input) and node.input[index]
    ]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in found:
            continue
        found.add(node.name)
        if node.op_type != "Shape":  # a Shape's input is the data it measures
            pending.extend(name for name in node.input if name)
    return found


def top1(session: Any, inputs: np.ndarray) -> np.ndarray:
    """Top-1 class index of each input."""
    return logits(session, inputs).argmax(axis=1)


def model_time_ms(model: bytes, example: np.ndarray, repeats: int = 30) -> float:
    """Median milliseconds of one run on ``example`` (1, 3, H, W), after a warm-up."""
    session = session_for(model)
    feed = {INPUT_NAME: example}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


#: Alternating rounds of :func:`side_by_side_ms`. On a 2-core VM, three rounds let one
#: burst decide which of two models looked faster (a 10-node model at 0.46x fp32's time,
#: a 6-node one at 0.62x; over ten rounds, 0.69x and 0.63x).
TIMING_ROUNDS = 5


def side_by_side_ms(
    models: Sequence[bytes], example: np.ndarray, rounds: int = TIMING_ROUNDS
) -> list[float]:
    """:func:`model_time_ms` of each model, measured in alternating rounds; the fastest
    round per model.

    Measured one after the other, the same model's time can change by half when the
    machine's load does; alternating spreads that over all of them. Another process's
    burst only ever adds time, so each model's fastest round is the one nearest its own
    cost: on a 2-core VM, the median of three rounds put one of ``benchmarks/int8.py``'s
    models at 1.19x fp32's time and one with more float nodes at 0.83x.
    """
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for index, model in enumerate(models):
            times[index].append(model_time_ms(model, example))
    return [min(values) for values in times]


def session_for(model: bytes) -> Any:
    """A CPU ONNX Runtime session over model bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
