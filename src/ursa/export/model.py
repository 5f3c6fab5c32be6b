"""``ursa.load``: a bundle as a ready-to-use model.

:class:`Model` runs the bundle's weights with PyTorch (``ursa[train]``).
:func:`load` returns the torch-free :class:`ursa.core.runtime.Predictor` (ONNX
Runtime) instead when the bundle holds ``model.onnx`` or PyTorch is not
installed; both have the same ``predict`` / ``predict_batch`` / ``logits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ursa.core.bundle import ONNX_NAME, WEIGHTS_NAME, Bundle, read_bundle
from ursa.core.errors import BundleError
from ursa.core.runtime import BundleModel, Predictor


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
    if backend == "onnx" or (backend == "auto" and ONNX_NAME in bundle.members):
        return Predictor(bundle)
    return Model(bundle)
