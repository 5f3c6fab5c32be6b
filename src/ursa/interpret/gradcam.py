"""Grad-CAM: where in the image a CNN found the evidence for a class.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization" (2017). For a target class ``c`` and the
activations ``A`` (K channels, h × w) of a convolutional stage:

    weight_k = mean over (i, j) of d score_c / d A_k[i, j]      # (K,)
    map      = relu(sum_k weight_k * A_k)                        # (h, w)

upsampled to the input size and scaled to [0, 1]. The stage is the
backbone's last one (timm's ``feature_info[-1]``): the finest semantics that
still keep a spatial layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ursa.core.errors import ConfigError


def last_conv_stage(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the backbone's last convolutional stage.

    timm CNNs list their stages in ``feature_info``; the last entry names the
    stage that feeds the head (``blocks.6`` for EfficientNet-Lite0, ``layer4``
    for a ResNet). Models without it (vision transformers, custom modules)
    cannot be explained this way.
    """
    info: Any = getattr(model, "feature_info", None)
    if info:
        name = info[-1]["module"] if isinstance(info[-1], dict) else None
        if isinstance(name, str):
            try:
                return name, model.get_submodule(name)
            except AttributeError:
                pass
    raise ConfigError(
        f"{type(model).__name__} names no convolutional stages (timm's feature_info), so "
        f"Grad-CAM cannot find the layer to explain; use heatmap=False, or a CNN backbone"
    )


class GradCAM:
    """Heat maps of where ``model`` looked, from one convolutional stage.

    >>> maps = GradCAM(model)(inputs, classes)   # (B, H, W) in [0, 1]

    A forward hook keeps the stage's output; :func:`torch.autograd.grad` then
    gives the gradient of the class scores with respect to it alone. Nothing
    is written into the parameters' ``.grad`` (a Learner in the middle of
    training is left as it was), and frozen parameters do not matter.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | None = None) -> None:
        self.model = model
        self.layer = layer if layer is not None else last_conv_stage(model)[1]

    def __call__(self, inputs: torch.Tensor, classes: Sequence[int] | torch.Tensor) -> np.ndarray:
        """Maps for ``inputs`` (B, 3, H, W), one per image for its class in ``classes``."""
        targets = torch.as_tensor(classes, dtype=torch.long, device=inputs.device)
        if targets.shape != (inputs.shape[0],):
            raise ConfigError(
                f"Grad-CAM needs one class per image: {inputs.shape[0]} images, "
                f"{tuple(targets.shape)} classes"
            )
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured.append(output)

        handle = self.layer.register_forward_hook(keep)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                # An input that needs a gradient makes the graph even when every parameter
                # is frozen.
                logits = self.model(inputs.detach().requires_grad_(True))  # (B, C)
                if not captured or captured[-1].ndim != 4:
                    raise ConfigError(
                        f"the layer given to Grad-CAM ({type(self.layer).__name__}) did not give "
                        f"a (B, K, h, w) feature map; pick a convolutional stage"
                    )
                activations = captured[-1]  # (B, K, h, w)
                # Each image's score depends only on its own activations, so the gradient
                # of the sum gives every image's gradient at once.
                score = logits.gather(1, targets[:, None]).sum()
                (gradients,) = torch.autograd.grad(score, activations)  # (B, K, h, w)
        finally:
            handle.remove()
            self.model.train(was_training)
        weights = gradients.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()  # (B, 1, h, w)
        cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        cam = cam[:, 0].float().cpu()  # (B, H, W)
        peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
        return (cam / peak).numpy()
