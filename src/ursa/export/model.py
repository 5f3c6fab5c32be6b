"""``ursa.load``: a bundle as a ready-to-use model.

:class:`Model` runs the bundle's weights with PyTorch (``ursa[train]``).
:func:`load` returns the torch-free :class:`ursa.serve.Predictor` (ONNX
Runtime) instead when the bundle holds ``model.onnx`` or PyTorch is not
installed; both have the same ``predict`` / ``predict_batch`` / ``logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ursa.data.imageio import MAX_PIXELS, ImageSource
from ursa.data.preprocess import prepare_input
from ursa.errors import BundleError
from ursa.export.bundle import WEIGHTS_NAME, Bundle, BundleConfig, read_bundle
from ursa.prediction import Prediction, predictions_from_logits

if TYPE_CHECKING:
    from ursa.serve.predictor import Predictor


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


class Model(BundleModel):
    """A loaded bundle run with PyTorch: ``predict`` and ``predict_batch`` over paths,
    bytes or PIL images."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._network = _torch_network(bundle)

    @property
    def network(self) -> Any:
        """The PyTorch module (eval mode, CPU)."""
        return self._network

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 preprocessed inputs → (N, C) logits."""
        import torch

        with torch.inference_mode():
            return self._network(torch.from_numpy(inputs)).float().numpy()


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


def _torch_network(bundle: Bundle) -> Any:
    try:
        import torch  # noqa: F401
        from safetensors.torch import load as load_safetensors

        from ursa.models.backbones import create_model
    except ImportError:
        raise BundleError(
            f"{bundle.path}: running this bundle needs PyTorch (pip install 'ursa[train]'), "
            f"or an ONNX model in it for the torch-free predictor: `ursa export "
            f"{bundle.path} --onnx` where PyTorch is installed"
        ) from None
    config = bundle.config
    try:
        state = load_safetensors(bundle.read(WEIGHTS_NAME))
    except Exception as error:
        raise BundleError(f"{bundle.path}: model.safetensors is unreadable ({error})") from None
    try:
        network = create_model(config.timm_name, len(config.class_names), pretrained=False)
    except (RuntimeError, ValueError) as error:  # timm: a name or shape it cannot build
        raise BundleError(
            f"{bundle.path}: cannot build architecture {config.timm_name!r} ({error})"
        ) from None
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape: e.g. more class names
        first = str(error).strip().splitlines()[-1].strip()
        raise BundleError(
            f"{bundle.path}: the weights do not fit {config.timm_name} with "
            f"{len(config.class_names)} classes ({first})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise BundleError(
            f"{bundle.path}: the weights do not fit {config.timm_name} with "
            f"{len(config.class_names)} classes ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors)"
        )
    return network.eval()


def load(path: str | Path, *, backend: str = "auto") -> Model | Predictor:
    """Open a ``.ursa`` bundle for prediction; a bad file raises :class:`BundleError`.

    ``backend``: ``"auto"`` uses ONNX Runtime when the bundle has ``model.onnx``
    or PyTorch is absent, else PyTorch; ``"onnx"`` or ``"torch"`` force one.
    """
    if backend not in ("auto", "onnx", "torch"):
        raise BundleError(f"backend={backend!r}: use auto, onnx or torch")
    bundle = read_bundle(path)
    if backend == "onnx" or (backend == "auto" and "model.onnx" in bundle.members):
        from ursa.serve.predictor import Predictor

        return Predictor(bundle)
    return Model(bundle)
