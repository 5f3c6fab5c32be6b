"""Quantization-aware fine-tuning: the ``qat`` int8 method, used when post-training int8 is refused.

A copy of the bundle's network is fine-tuned for a few dozen steps with the int8
rounding that ONNX Runtime's static quantization will apply simulated in its forward
pass (fake quantization, straight-through gradients), so that the weights learn to
live with it; then the fine-tuned weights are exported to ONNX and quantized exactly
as the ``static`` method quantizes (:class:`ursa.export.quantize.Quantizer`: QDQ, MinMax
calibration on the same images, per-channel int8 weights).

What is simulated, to match that quantization:

* **weights** of every convolution and linear layer but the classifier (which stays
  float in the int8 model): per output channel, symmetric,
  levels −127…127 (the batch norms stay frozen in eval mode, so quantizing a
  convolution's weight per channel is the same as quantizing it with its batch norm
  folded in, which is what ONNX Runtime sees);
* **activations**: the input of every convolution and linear layer, and the output of
  every batch norm (in timm's CNNs the batch norm carries the activation, so that is
  the tensor ONNX Runtime quantizes after a convolution; after the linear-bottleneck
  projections, it is the one whose range makes int8 lose accuracy), per tensor,
  asymmetric, levels 0…255. Their ranges are the min/max over the calibration images
  (widened to include 0, as ONNX Runtime does), measured again with the current
  weights before every epoch.

The loss is distillation, not the labels: the Kullback-Leibler divergence of the
fake-quantized copy's softmax from the fp32 model's, on the training images (each batch
mirrored with probability ½). What the gate measures is agreement with fp32, and the
fp32 model stays the reference whatever the labels say.

Needs PyTorch (``ursa[train]``). The numbers behind the settings are in
docs/benchmarks.md (int8 methods).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ursa.core.bundle import Bundle
from ursa.core.preprocess import prepare_input

log = logging.getLogger(__name__)

__all__ = ["QatSettings", "QatSource", "fine_tune_for_int8"]

#: int8 levels of ONNX Runtime's static quantization: symmetric weights, uint8 activations.
WEIGHT_LEVELS = (-127, 127)
#: ONNX Runtime's ``reduce_range`` for int8 weights (7 bits: :mod:`ursa.core.cpu`).
REDUCED_WEIGHT_LEVELS = (-64, 64)
ACTIVATION_LEVELS = (0, 255)


@dataclass(frozen=True)
class QatSettings:
    """How long and how hard the quantization-aware fine-tune runs."""

    images: int = 400
    """Training images it fine-tunes on (all of them when fewer), drawn with the bundle's seed."""
    epochs: int = 2
    batch_size: int = 16
    lr: float = 5e-6
    """Adam's rate. Every weight moves by about this much a step, so it must be far below
    a quantization step: on ``benchmarks/int8.py``'s digits model 5e-6 took the
    simulated int8 model's agreement with fp32 from 90.2 % to 93.0 % in two epochs,
    while 1e-5 and 2e-5 (and SGD at 1e-4) were unstable from the second epoch, when the
    activation ranges are measured again."""


@dataclass(frozen=True)
class QatSource:
    """What the ``qat`` method fine-tunes: the bundle's network and training images."""

    bundle: Bundle
    images: Sequence[Path]
    settings: QatSettings = QatSettings()


class _ActivationQuant:
    """Per-tensor uint8 fake quantization of activations, keyed by where they are taken.

    While ``observing``, tensors pass unchanged and their min/max are recorded; after,
    each is rounded to 256 levels of its recorded range.
    """

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}
        self.observing = False
        self._grids: dict[str, tuple[float, int]] = {}

    def start_observing(self) -> None:
        self.ranges, self._grids, self.observing = {}, {}, True

    def stop_observing(self) -> None:
        self.observing = False
        for key, (low, high) in self.ranges.items():
            low, high = min(low, 0.0), max(high, 0.0)
            scale = max((high - low) / ACTIVATION_LEVELS[1], 1e-8)
            zero = int(np.clip(round(-low / scale), *ACTIVATION_LEVELS))
            self._grids[key] = (scale, zero)

    def __call__(self, key: str, tensor: Any) -> Any:
        import torch

        if self.observing:
            low, high = float(tensor.detach().min()), float(tensor.detach().max())
            if key in self.ranges:
                old_low, old_high = self.ranges[key]
                low, high = min(low, old_low), max(high, old_high)
            self.ranges[key] = (low, high)
            return tensor
        grid = self._grids.get(key)
        if grid is None:  # a tensor the calibration pass never saw: leave it
            return tensor
        return torch.fake_quantize_per_tensor_affine(tensor, grid[0], grid[1], *ACTIVATION_LEVELS)


def _weight_quantizer(weight_bits: int = 8) -> Any:
    import torch
    from torch import nn

    levels = WEIGHT_LEVELS if weight_bits == 8 else REDUCED_WEIGHT_LEVELS

    class WeightQuant(nn.Module):
        """Per-output-channel symmetric int8 fake quantization of a weight (on 7 bits:
        ONNX Runtime's ``reduce_range``)."""

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            flat = weight.detach().reshape(weight.shape[0], -1)
            scale = (flat.abs().amax(dim=1) / levels[1]).clamp_min(1e-12)
            zeros = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
            return torch.fake_quantize_per_channel_affine(weight, scale.float(), zeros, 0, *levels)

    return WeightQuant


def instrument(network: Any, weight_bits: int = 8) -> tuple[_ActivationQuant, Callable[[], None]]:
    """Add fake quantization to ``network`` in place; returns its activation quantizer and
    a function that removes every hook and parametrization (leaving the trained weights)."""
    from torch import nn
    from torch.nn.utils import parametrize

    activations = _ActivationQuant()
    weight_quant = _weight_quantizer(weight_bits)
    handles = []
    parametrized = []
    done = "_ursa_fake_quantized"

    def quantize_input(key: str) -> Callable[..., Any]:
        def hook(module: Any, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
            first = inputs[0]
            if getattr(first, done, False):  # already on its grid (a batch norm's output)
                return inputs
            return (activations(key, first), *inputs[1:])

        return hook

    def quantize_output(key: str) -> Callable[..., Any]:
        def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> Any:
            result = activations(key, output)
            setattr(result, done, True)
            return result

        return hook

    # The layer that writes the logits stays float in the int8 model (``output_nodes``):
    # its input is quantized there, its weights are not.
    classifier = network.get_classifier() if hasattr(network, "get_classifier") else None
    for name, module in network.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_pre_hook(quantize_input(f"{name}:in")))
            if module is not classifier:
                parametrize.register_parametrization(module, "weight", weight_quant())
                parametrized.append(module)
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(quantize_output(f"{name}:out")))

    def remove() -> None:
        for handle in handles:
            handle.remove()
        for module in parametrized:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)

    return activations, remove


def fine_tune_for_int8(source: QatSource, calibration: np.ndarray, weight_bits: int = 8) -> Any:
    """A fine-tuned copy of the bundle's network (eval mode, CPU, plain fp32 modules).

    ``calibration``: the (N, 3, H, W) inputs the activation ranges are measured on (the
    ones ONNX Runtime will calibrate the exported model on); ``weight_bits``: 8, or 7 as
    ONNX Runtime's ``reduce_range`` quantizes them.
    """
    import torch

    from ursa.export.model import Model

    settings = source.settings
    teacher = Model(source.bundle).network
    student = copy.deepcopy(teacher).eval()  # batch norms frozen, dropout off
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    config = source.bundle.config.preprocess
    rng = random.Random(source.bundle.config.record.seed)
    paths = list(source.images)
    paths = rng.sample(paths, min(settings.images, len(paths)))
    inputs = torch.from_numpy(np.stack([prepare_input(path, config) for path in paths]))
    probe = torch.from_numpy(calibration)
    activations, remove = instrument(student, weight_bits)
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr)
    started = time.perf_counter()
    try:
        for epoch in range(settings.epochs):
            activations.start_observing()
            with torch.no_grad():
                for start in range(0, len(probe), 32):
                    student(probe[start : start + 32])
            activations.stop_observing()
            order = list(range(len(inputs)))
            rng.shuffle(order)
            total, steps = 0.0, 0
            for start in range(0, len(order), settings.batch_size):
                batch = inputs[order[start : start + settings.batch_size]]
                if rng.random() < 0.5:
                    batch = batch.flip(-1)
                with torch.no_grad():
                    target = torch.log_softmax(teacher(batch), dim=1)
                predicted = torch.log_softmax(student(batch), dim=1)
                loss = (target.exp() * (target - predicted)).sum(dim=1).mean()  # KL(fp32‖int8)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
            log.info(
                "int8 qat: epoch %d, distillation loss %.4f, %.0f s",
                epoch + 1,
                total / max(steps, 1),
                time.perf_counter() - started,
            )
    finally:
        remove()
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    return student.eval()
