"""``ursa export``: add checked ``model.onnx`` and ``model.int8.onnx`` members to a bundle."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ursa.core.bundle import INT8_NAME, ONNX_NAME, Bundle, read_bundle
from ursa.core.cpu import int8_kernels, weight_bits_for
from ursa.core.errors import ConfigError, DataError, UrsaError
from ursa.export.gate import (
    AGREEMENT_TARGET,
    MAX_DROP_POINTS,
    GateResult,
    GateRule,
    judge,
    pick,
)
from ursa.export.onnx import (
    ExportError,
    ParityReport,
    export_onnx,
    rewrite_bundle,
)
from ursa.export.qat import QatSource
from ursa.export.quantize import (
    METHODS,
    Int8Candidate,
    Method,
    Quantizer,
    QuantizeReport,
    load_inputs,
    refusal,
    session_for,
    side_by_side_ms,
    top1,
    tried_name,
)

log = logging.getLogger(__name__)

#: What the quantization-aware fine-tune needs beside ONNX Runtime (``ursa[train]``).
QAT_PACKAGES = ("torch", "timm", "safetensors")
#: What the report or a refusal says when the quantization-aware fine-tune could not run.
QAT_NEEDS_TORCH = (
    "the qat method (the quantization-aware fine-tune) was not tried: it needs PyTorch "
    "(pip install 'ursa[train]')"
)


def qat_available() -> bool:
    """Whether the packages the ``qat`` method imports are installed."""
    return all(importlib.util.find_spec(name) is not None for name in QAT_PACKAGES)


#: Parity samples taken from the user's validation images when there are some.
PARITY_IMAGES = 16


@dataclass(frozen=True)
class ExportResult:
    """What ``export_for_serving`` added to the bundle, with the checks' numbers."""

    bundle: Path
    parity: ParityReport | None
    int8: QuantizeReport | None


def export_for_serving(
    path: str | Path,
    *,
    onnx: bool = True,
    int8: bool = False,
    calibrate: str | Path | None = None,
    calibration_images: int = 200,
    max_drop: float = MAX_DROP_POINTS,
    methods: Sequence[Method] = METHODS,
    weight_bits: int | None = None,
) -> ExportResult:
    """Export the bundle at ``path`` to ONNX (and int8), check both, rewrite it atomically.

    int8 needs ``calibrate``: the training folder (or one like it). Its training
    split calibrates the quantizer; its validation split, rebuilt with the
    bundle's seed and ``valid_pct``, measures the accuracy drop. ``methods`` are
    tried in order (see :mod:`ursa.export.quantize`) until one that the gate
    (:mod:`ursa.export.gate`, ``max_drop`` points) accepts agrees with fp32 on 98 % of
    the validation images with every node int8; the shipped one is chosen by
    :func:`ursa.export.gate.pick` (of those reaching 98 %, the fastest, timed side by side).
    """
    if not onnx and not int8:
        raise ConfigError("nothing to export: pass --onnx, --int8 or both")
    if int8 and calibrate is None:
        raise ConfigError(
            "int8 quantization needs --calibrate DATA: a folder of your images (one folder per "
            "class, like the training folder) to calibrate on and to check accuracy against"
        )
    if calibration_images < 1:
        raise ConfigError(f"calibration_images={calibration_images}: use 1 or more")
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"int8 methods {', '.join(map(repr, unknown)) or '(none)'}: use some of "
            f"{', '.join(METHODS)}"
        )
    if int8 and set(methods) == {"qat"} and not qat_available():
        raise ConfigError(QAT_NEEDS_TORCH.replace("was not tried", "cannot run"))
    if weight_bits not in (None, 7, 8):
        raise ConfigError(f"int8 weight bits {weight_bits}: use 7 or 8 (or None: by this CPU)")
    rule = GateRule(max_drop_points=max_drop)
    bundle = read_bundle(path)
    split = calibration_split(bundle, Path(calibrate)) if calibrate is not None else None
    parity: ParityReport | None = None
    members: dict[str, bytes] = {}
    if onnx or ONNX_NAME not in bundle.members:
        samples = split[1][:PARITY_IMAGES] if split else []
        onnx_bytes, parity = export_onnx(bundle, samples)
        members[ONNX_NAME] = onnx_bytes
    else:
        onnx_bytes = bundle.read(ONNX_NAME)
    update = {} if parity is None else {"onnx": parity.to_dict()}
    report: QuantizeReport | None = None
    if int8 and split is not None:
        try:
            int8_bytes, report = _quantize(
                bundle, onnx_bytes, split, calibration_images, rule, methods, weight_bits
            )
        except ExportError:
            if members:  # the checked fp32 model is kept even when int8 is refused
                rewrite_bundle(bundle, members, update)
            raise
        members[INT8_NAME] = int8_bytes
        update["int8"] = report.to_dict()
    rewrite_bundle(bundle, members, update)
    return ExportResult(bundle=bundle.path, parity=parity, int8=report)


_Split = tuple[list[Path], list[Path], np.ndarray]


def calibration_split(bundle: Bundle, folder: Path) -> _Split:
    """(calibration files, validation files, validation label indices) from ``folder``."""
    from ursa.data.as_trained import data_as_trained

    # A model trained without a validation split still needs held-out images here.
    valid_pct = bundle.config.record.valid_pct or 0.2
    data = data_as_trained(bundle.config, folder, valid_pct=valid_pct)
    names = bundle.config.class_names
    unknown = sorted(set(data.class_names) - set(names))
    if unknown:
        raise DataError(
            f"{folder} has classes the model does not know: {', '.join(unknown)} "
            f"(it knows {', '.join(names)}); calibrate on the data it was trained on"
        )
    if not data.valid_items:
        raise DataError(
            f"{folder} gives no validation images, so the int8 accuracy cannot be checked; "
            f"use a folder with a valid/ split or more images per class"
        )
    train = [item.path for item in data.train_items]
    valid = [item.path for item in data.valid_items]
    labels = np.array([names.index(item.label) for item in data.valid_items])
    return train, valid, labels


def calibration_sample(bundle: Bundle, train: list[Path], count: int) -> list[Path]:
    """``count`` training images (all when fewer), drawn with the bundle's seed."""
    return random.Random(bundle.config.record.seed).sample(train, min(count, len(train)))


def _quantize(
    bundle: Bundle,
    onnx_bytes: bytes,
    split: _Split,
    count: int,
    rule: GateRule,
    methods: Sequence[Method],
    weight_bits: int | None = None,
) -> tuple[bytes, QuantizeReport]:
    """The int8 model of ``methods`` to ship (see :func:`ursa.export.gate.pick`), its report.

    ``weight_bits`` None: 8 where this CPU's int8 kernels are exact, else 7
    (:func:`ursa.core.cpu.weight_bits_for`): the gate measures what this CPU computes.
    """
    train, valid, labels = split
    notes: list[str] = []
    kernels = int8_kernels()
    bits = weight_bits_for(kernels) if weight_bits is None else weight_bits
    bits_notes = []  # said with the result, not as a reason no model was made
    if bits < 8 and weight_bits is None:
        bits_notes.append(
            f"weights on 7 bits: this CPU's int8 kernels are {kernels} (8-bit weights saturate "
            "on x86 CPUs without VNNI); --int8-weights 8 makes a model for VNNI or ARM CPUs, "
            "whose accuracy this CPU cannot check"
        )
    config = bundle.config.preprocess
    if "qat" in methods and not qat_available():
        methods = [method for method in methods if method != "qat"]
        notes.append(QAT_NEEDS_TORCH)
    chosen = calibration_sample(bundle, train, count)
    valid_inputs = load_inputs(valid, config)
    fp32_top1 = top1(session_for(onnx_bytes), valid_inputs)
    source = QatSource(bundle, train)
    with Quantizer(
        onnx_bytes, load_inputs(chosen, config), qat=source, weight_bits=bits
    ) as quantizer:
        tried = try_methods(quantizer, methods, labels, fp32_top1, valid_inputs, rule, notes)
    if not tried:  # only qat was asked for, and it failed
        raise ExportError(f"no int8 model was made: {'; '.join(notes)}")
    example = valid_inputs[:1]
    reaching = [
        index
        for index, (_, gate) in enumerate(tried)
        if gate.accepted and gate.agreement >= AGREEMENT_TARGET
    ]
    # Model times side by side (alternating rounds), so that the fastest of the models
    # that agree enough is shipped: float nodes slow int8 down (on benchmarks/int8.py's
    # fashion100 model in run M, the sensitivity model closest to fp32 kept 27 nodes, at
    # 0.80x fp32's time; one with 7 agreed with fp32 on 98.6 % of the images at 0.67x).
    int8_ms: dict[int, float] = {}
    fp32_ms: float | None = None
    if len(reaching) > 1:
        measured = [onnx_bytes, *(tried[index][0].model for index in reaching)]
        fp32_ms, *timed = side_by_side_ms(measured, example)
        int8_ms = dict(zip(reaching, timed, strict=True))
    gates = [gate for _, gate in tried]
    shipped = pick(gates, times=[int8_ms.get(index) for index in range(len(tried))])
    others = [
        {
            "method": candidate.method,
            "float_nodes": len(candidate.float_nodes),
            "seconds": round(candidate.seconds, 1),
            "int8_ms": int8_ms.get(index),
            **gate.to_dict(),
        }
        for index, (candidate, gate) in enumerate(tried)
        if index != shipped
    ]
    if shipped is None:  # then others is every model tried, the last one included
        raise refusal(
            tried_name(others[-1]), gates[-1], others[:-1], note="; ".join(notes + bits_notes)
        )
    candidate, gate = tried[shipped]
    if fp32_ms is None:  # the one model that reached 98 %, or none did: time it now
        fp32_ms, int8_ms[shipped] = side_by_side_ms([onnx_bytes, candidate.model], example)
    report = QuantizeReport(
        method=candidate.method,
        calibration_images=len(chosen),
        valid_images=len(valid),
        fp32_accuracy=gate.fp32_accuracy,
        int8_accuracy=gate.int8_accuracy,
        drop_points=gate.drop_points,
        max_drop_points=rule.max_drop_points,
        gate=gate,
        float_nodes=candidate.float_nodes,
        fp32_ms=fp32_ms,
        int8_ms=int8_ms[shipped],
        build_seconds=round(candidate.seconds, 1),
        tried=tuple(others),
        notes=tuple(notes + bits_notes),
        weight_bits=bits,
        kernels=kernels,
    )
    return candidate.model, report


def try_methods(
    quantizer: Quantizer,
    methods: Sequence[Method],
    labels: np.ndarray,
    fp32_top1: np.ndarray,
    valid_inputs: np.ndarray,
    rule: GateRule,
    notes: list[str],
    *,
    stop_early: bool = True,
) -> list[tuple[Int8Candidate, GateResult]]:
    """Each int8 model of ``methods`` (in order), with the gate's result on the validation images.

    ``stop_early``: stop after a model that the gate accepts and that agrees with fp32 on
    :data:`~ursa.export.gate.AGREEMENT_TARGET` of the images with every node int8 (no later
    model can be faster). A model identical to one judged before (the sensitivity pass's
    all-int8 model, after static's) is left out, and a method that made only such models
    is named in ``notes``. A qat fine-tune that fails is left out, with why in ``notes``;
    one that fails part-way keeps the models it made before.
    """
    tried: list[tuple[Int8Candidate, GateResult]] = []
    judged: set[bytes] = set()  # the sensitivity pass's all-int8 model is static's
    for method in methods:
        models = quantizer.models(method)
        made = new = 0  # this method's models, and those not judged before
        try:
            while True:
                try:
                    candidate = next(models, None)
                except (UrsaError, ImportError, RuntimeError, ValueError, MemoryError) as error:
                    if method != "qat":
                        raise
                    # A fine-tune that cannot run (memory, an odd architecture) must not
                    # cost the models the cheaper methods already made.
                    log.warning("int8 qat failed: %s", error)
                    notes.append(
                        f"the qat method failed ({error}) and was left out"
                        if not new
                        else f"the qat method failed part-way ({error}); "
                        + ("the model it made before is kept" if new == 1 else
                           f"the {new} models it made before are kept")
                    )  # fmt: skip
                    break
                if candidate is None:
                    break
                made += 1
                digest = hashlib.sha256(candidate.model).digest()
                if digest in judged:
                    continue
                judged.add(digest)
                new += 1
                int8_top1 = top1(session_for(candidate.model), valid_inputs)
                gate = judge(labels, fp32_top1, int8_top1, rule)
                tried.append((candidate, gate))
                reached = gate.accepted and gate.agreement >= AGREEMENT_TARGET
                if stop_early and reached and not candidate.float_nodes:
                    return tried  # the rest of the method is never made
        finally:
            models.close()  # a pass left part-way: its temporary files go now
        if made and not new:  # said, or the report would not show that it ran
            notes.append(
                f"the {method} method made no model but ones judged before (no float prefix "
                "came a tenth closer to fp32 than its all-int8 model, static's)"
            )
    return tried
