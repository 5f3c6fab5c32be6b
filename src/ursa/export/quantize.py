"""int8 static quantization with ONNX Runtime, accepted only if accuracy holds.

Activations are calibrated on the user's own training images (min/max over
up to ``calibration_images`` of them); weights are quantized per channel.
The int8 model is then run on the validation split next to the fp32 model,
and refused when top-1 accuracy drops by more than ``max_drop`` points.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ursa.core.bundle import INPUT_NAME
from ursa.core.errors import DataError
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.export.onnx import ExportError

log = logging.getLogger(__name__)

#: Largest accuracy loss (percentage points) an int8 model may cost.
MAX_DROP_POINTS = 1.0


@dataclass(frozen=True)
class QuantizeReport:
    """fp32 and int8 top-1 accuracy on the validation split, and the drop in points."""

    calibration_images: int
    valid_images: int
    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    max_drop_points: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_inputs(paths: Sequence[Path], config: PreprocessConfig) -> np.ndarray:
    """Decode and preprocess ``paths`` into one (N, 3, H, W) array."""
    return np.stack([prepare_input(path, config) for path in paths])


def accuracy(session: Any, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> float:
    """Top-1 accuracy of an ORT session on preprocessed inputs and integer labels."""
    hits = 0
    for start in range(0, len(inputs), batch_size):
        logits = session.run(None, {INPUT_NAME: inputs[start : start + batch_size]})[0]
        hits += int((logits.argmax(axis=1) == labels[start : start + batch_size]).sum())
    return hits / max(len(inputs), 1)


def check_drop(
    fp32_accuracy: float,
    int8_accuracy: float,
    *,
    calibration_images: int,
    valid_images: int,
    max_drop: float = MAX_DROP_POINTS,
) -> QuantizeReport:
    """The report, or :class:`ExportError` when int8 costs more than ``max_drop`` points."""
    drop = round((fp32_accuracy - int8_accuracy) * 100.0, 4)
    report = QuantizeReport(
        calibration_images=calibration_images,
        valid_images=valid_images,
        fp32_accuracy=fp32_accuracy,
        int8_accuracy=int8_accuracy,
        drop_points=drop,
        max_drop_points=max_drop,
    )
    if drop > max_drop:
        raise ExportError(
            f"int8 model refused: top-1 accuracy on {valid_images} validation images fell from "
            f"{fp32_accuracy:.2%} to {int8_accuracy:.2%}, a drop of {drop:.2f} points (at most "
            f"{max_drop:g} allowed). Calibrate on more, or more typical, images; the fp32 "
            f"model.onnx is unaffected"
        )
    return report


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed inputs, one at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._rows: Iterator[np.ndarray] = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {INPUT_NAME: row[None]}

    def rewind(self) -> None:  # pragma: no cover - only called by some calibrators
        raise NotImplementedError


def quantize_int8(fp32_model: bytes, calibration: np.ndarray) -> bytes:
    """Static QDQ int8 quantization of ``fp32_model``, calibrated on ``calibration`` inputs."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise DataError("int8 calibration needs at least one image")
    with tempfile.TemporaryDirectory(prefix="ursa-int8-") as folder:
        source = Path(folder, "fp32.onnx")
        prepared = Path(folder, "prepared.onnx")
        target = Path(folder, "int8.onnx")
        source.write_bytes(fp32_model)
        # Folds constants and fills in shapes so that every Conv/Gemm gets quantized.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return target.read_bytes()


def session_for(model: bytes) -> Any:
    """A CPU ONNX Runtime session over model bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
