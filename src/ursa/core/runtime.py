"""``Predictor``: a bundle's ONNX model on ONNX Runtime. Imports neither torch nor timm.

Images go through the same safe opener and the same PIL + numpy validation
transform as training (:func:`ursa.core.imageio.open_image`,
:func:`ursa.core.preprocess.preprocess`), so one file gives one input tensor
everywhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ursa.core.bundle import INPUT_NAME, INT8_NAME, ONNX_NAME, Bundle, BundleConfig, read_bundle
from ursa.core.cpu import saturation_warning
from ursa.core.errors import BundleError, ConfigError
from ursa.core.imageio import MAX_PIXELS, DecodeBudget, ImageSource, check_image_size
from ursa.core.prediction import Prediction, predictions_from_logits
from ursa.core.preprocess import decode_size, prepare_input

log = logging.getLogger(__name__)


class BundleModel:
    """What every way of running a bundle shares: opening and preprocessing images the
    same way as training, batching, and turning logits into predictions.

    Subclasses (the PyTorch :class:`Model`, the ONNX Runtime ``ursa.serve.Predictor``)
    set :attr:`bundle` and implement :meth:`logits`. Torch-free.
    """

    bundle: Bundle
    max_pixels: int = MAX_PIXELS

    @property
    def config(self) -> BundleConfig:
        return self.bundle.config

    @property
    def class_names(self) -> list[str]:
        return self.bundle.config.class_names

    @property
    def metrics(self) -> dict[str, Any]:
        return self.bundle.metrics

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 preprocessed inputs → (N, C) logits."""
        raise NotImplementedError

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Decode (safely) and preprocess one file: (3, H, W) float32."""
        return prepare_input(source, self.config.preprocess, max_pixels=self.max_pixels)

    def predict_arrays(self, inputs: np.ndarray) -> list[Prediction]:
        """Predictions for preprocessed inputs, one per row."""
        return predictions_from_logits(self.logits(inputs), self.class_names)

    def predict_batch(
        self, sources: Sequence[ImageSource], batch_size: int = 32
    ) -> list[Prediction]:
        """Predict several images, ``batch_size`` per model call."""
        results: list[Prediction] = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            results += self.predict_arrays(np.stack([self.prepare(s) for s in chunk]))
        return results

    def predict(self, source: ImageSource) -> Prediction:
        """Predict one image."""
        return self.predict_arrays(self.prepare(source)[None])[0]


def check_graph_shapes(
    bundle: Bundle, input_shape: Sequence[object], output_shape: Sequence[object]
) -> None:
    """Refuse an ONNX graph whose input side or class count is not what ``config.json``
    says (a hostile or mismatched bundle), so no prediction fails later. Symbolic
    dimensions (strings, None) are not checked."""
    config = bundle.config
    classes = output_shape[-1] if output_shape else None
    if isinstance(classes, int) and classes != len(config.class_names):
        raise BundleError(
            f"{bundle.path}: config.json names {len(config.class_names)} classes, the model "
            f"has {classes} outputs; the bundle was altered: re-export it from its training"
        )
    side = [d for d in input_shape[2:] if isinstance(d, int)]
    if side and any(d != config.preprocess.size for d in side):
        raise BundleError(
            f"{bundle.path}: config.json says {config.preprocess.size} px inputs, the model "
            f"takes {list(input_shape[2:])}; the bundle was altered: re-export it"
        )


#: ``--provider`` names → ONNX Runtime execution providers, best first (CPU always last).
PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_providers() -> list[str]:
    """The ``--provider`` names this onnxruntime build can run."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    return [name for name, chain in PROVIDERS.items() if chain[0] in present]


class Predictor(BundleModel):
    """Predict with a bundle's ``model.onnx`` (or ``model.int8.onnx``) on ONNX Runtime.

    ``threads`` is the intra-op thread count (default: one per usable core,
    divided by ``workers`` when several server processes share the machine).
    ``spin``: ONNX Runtime's threads busy-wait for the next op instead of sleeping:
    lower latency for one caller predicting in a loop, but the spinning burns the
    cores that decoding and HTTP need, so the server turns it off.
    ``max_decoded_bytes``: refuse images that would take more memory decoded (checked
    from the header, before decoding; see :func:`ursa.core.imageio.decoded_bytes`).
    ``max_decoding_bytes``: decoded bytes of all images that ``prepare`` decodes at once,
    from any number of threads (see :class:`~ursa.serve.limits.DecodeBudget`); it applies
    with ``max_decoded_bytes``.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        *,
        int8: bool = False,
        provider: str = "cpu",
        threads: int | None = None,
        max_pixels: int = MAX_PIXELS,
        max_decoded_bytes: int | None = None,
        max_decoding_bytes: int | None = None,
        spin: bool = True,
    ) -> None:
        self.spin = spin
        self.max_decoded_bytes = max_decoded_bytes
        self.decode_budget = (
            None if max_decoding_bytes is None else DecodeBudget(max_decoding_bytes)
        )
        self.bundle = bundle if isinstance(bundle, Bundle) else read_bundle(bundle)
        self.max_pixels = max_pixels
        self.bundle.config.preprocess.input.require()  # e.g. soundfile for an audio model
        self.int8 = int8
        self.member = INT8_NAME if int8 else ONNX_NAME
        if self.member not in self.bundle.members:
            flags = "--int8 --calibrate DATA" if int8 else "--onnx"
            raise BundleError(
                f"{self.bundle.path}: the bundle has no {self.member}; add it with "
                f"`ursa export {self.bundle.path} {flags}`"
            )
        if provider not in PROVIDERS:
            raise ConfigError(f"provider={provider!r}: use one of {', '.join(PROVIDERS)}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads={threads}: use 1 or more")
        self.threads = threads or cpu_count()
        self.provider = provider
        self._session = self._open_session(provider)
        self.providers: list[str] = list(self._session.get_providers())
        graph_in, graph_out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        check_graph_shapes(self.bundle, graph_in.shape, graph_out.shape)
        self.int8_warning: str | None = None
        """Why this int8 model's accuracy may not hold on this CPU (:mod:`ursa.core.cpu`)."""
        if int8 and provider == "cpu":
            exported = self.bundle.metrics.get("export")
            report = exported.get("int8") if isinstance(exported, dict) else None
            # Bundles exported before 7-bit weights existed have 8-bit ones.
            bits = report.get("weight_bits", 8) if isinstance(report, dict) else 8
            self.int8_warning = saturation_warning(bits if bits in (7, 8) else 8)
            if self.int8_warning:
                log.warning("%s: %s", self.bundle.path, self.int8_warning)

    def _open_session(self, provider: str) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError("serving needs ONNX Runtime: pip install 'ursa[serve]'") from None
        chain = PROVIDERS[provider]
        if chain[0] not in ort.get_available_providers():
            raise ConfigError(
                f"provider {provider!r} is not available in this onnxruntime "
                f"({', '.join(ort.get_available_providers())}); for cuda/tensorrt install "
                f"onnxruntime-gpu instead of onnxruntime, or use --provider cpu"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # A CNN is one chain of ops: all cores inside each op, none between ops.
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(self.spin)))
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(self.bundle.read(self.member), options, providers=chain)
        except Exception as error:  # ORT raises its own untyped errors on bad models
            raise BundleError(
                f"{self.bundle.path}: {self.member} cannot be loaded by ONNX Runtime ({error})"
            ) from None

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Decode (safely) and preprocess one file: (3, H, W) float32; an image over
        ``max_decoded_bytes`` raises :class:`~ursa.core.errors.ImageError` before decoding."""
        preprocess = self.config.preprocess
        if self.max_decoded_bytes is None or preprocess.input.kind != "image":
            return super().prepare(source)
        cost = check_image_size(
            source,
            max_pixels=self.max_pixels,
            draft=decode_size(preprocess),
            max_decoded_bytes=self.max_decoded_bytes,
        )
        if self.decode_budget is None:
            return super().prepare(source)
        with self.decode_budget.hold(cost):
            return super().prepare(source)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 preprocessed inputs → (N, C) logits."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        return np.asarray(self._session.run(None, {INPUT_NAME: inputs})[0])

    def describe(self) -> dict[str, Any]:
        """What ``GET /metadata`` reports about the model and the runtime."""
        import onnxruntime as ort

        return {
            "model": self.member,
            "int8": self.int8,
            "provider": self.provider,
            "execution_providers": self.providers,
            "threads": self.threads,
            "spin": self.spin,
            "onnxruntime_version": ort.__version__,
            "int8_warning": self.int8_warning,
        }
