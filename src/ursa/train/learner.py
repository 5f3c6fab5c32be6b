"""The Learner: a backbone with a new head, fitted with fastai's recipe, exported as a bundle."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ursa.data.core import ImageData
from ursa.data.imageio import ImageSource, open_image
from ursa.data.preprocess import PreprocessConfig, preprocess
from ursa.errors import ConfigError, DataError
from ursa.models.backbones import backbone_info, classifier_of, create_model, layer_groups
from ursa.prediction import Prediction, predictions_from_logits
from ursa.train.loop import Metrics, evaluate, fit
from ursa.train.progress import EpochRecord, PrintLogger, TrainingLogger

if TYPE_CHECKING:
    from ursa.interpret.interpretation import Interpretation

log = logging.getLogger(__name__)

LearningRate = float | tuple[float, float]
"""One rate for every layer group, or (first layers, head) spread geometrically between."""


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Learner:
    """Fine-tunes a pretrained backbone on an :class:`~ursa.data.ImageData`.

    >>> learner = Learner(data, arch="efficientnet_lite0")
    >>> learner.fine_tune(3)
    >>> learner.export("bears.ursa")
    """

    def __init__(
        self,
        data: ImageData,
        arch: str = "efficientnet_lite0",
        *,
        pretrained: bool = True,
        weights: str | Path | None = None,
        drop_rate: float = 0.2,
        weight_decay: float = 0.01,
        train_bn: bool = True,
        seed: int | None = None,
        device: str | torch.device | None = None,
        logger: TrainingLogger | None = None,
    ) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate={drop_rate}: use a probability from 0 up to 1")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay={weight_decay}: use 0 or more")
        self.data = data
        self.arch = arch
        self.seed = data.config.seed if seed is None else seed
        self.weight_decay = weight_decay
        self.train_bn = train_bn
        self.device = torch.device(device) if device is not None else default_device()
        self.logger: TrainingLogger = logger or PrintLogger()
        info = backbone_info(arch)
        self.timm_name = info.timm_name
        self.preprocess = PreprocessConfig(
            size=data.config.size,
            resize=data.config.resize,
            interpolation=info.interpolation,  # type: ignore[arg-type]
            mean=info.mean,
            std=info.std,
        )
        torch.manual_seed(self.seed)  # the new head's initial weights follow the seed
        self.model = create_model(
            arch,
            len(data.class_names),
            pretrained=pretrained,
            weights=weights,
            drop_rate=drop_rate,
        ).to(self.device)
        self.pretrained = pretrained or weights is not None
        self.loss_fn = nn.CrossEntropyLoss()
        self.history: list[EpochRecord] = []
        self.fits: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.frozen = False
        self._loaders: tuple[Any, Any] | None = None

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    def _dataloaders(self) -> tuple[Any, Any]:
        if self._loaders is None:
            self._loaders = self.data.dataloaders(self.preprocess)
        return self._loaders

    # -- freezing ------------------------------------------------------------------------

    def freeze(self) -> None:
        """Train only the head, plus the body's batch-norm layers when ``train_bn`` (as fastai:
        they adapt the pretrained statistics to the new images at little cost)."""
        trainable = {id(p) for p in classifier_of(self.model).parameters()}
        if self.train_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    trainable.update(id(p) for p in module.parameters())
        for parameter in self.model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        self.frozen = True

    def unfreeze(self) -> None:
        """Train every layer."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)
        self.frozen = False

    # -- fitting -------------------------------------------------------------------------

    def _optimizer(self, lr: LearningRate) -> tuple[torch.optim.Optimizer, list[float]]:
        """AdamW over [early body, late body, head]; no weight decay on biases and norms."""
        groups = layer_groups(self.model)
        rates = _group_rates(lr, len(groups))
        param_groups, max_lrs = [], []
        for params, rate in zip(groups, rates, strict=True):
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for subset, wd in ((decay, self.weight_decay), (no_decay, 0.0)):
                if subset:
                    param_groups.append({"params": subset, "lr": rate, "weight_decay": wd})
                    max_lrs.append(rate)
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.99), eps=1e-5), max_lrs

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: LearningRate = 2e-3,
        *,
        div: float = 25.0,
        final_div: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        phase: str | None = None,
    ) -> list[EpochRecord]:
        """Train ``epochs`` epochs with the one-cycle policy.

        The rate warms from ``lr_max/div`` to ``lr_max`` over ``pct_start`` of the
        steps, then anneals (cosine) to ``lr_max/final_div``; momentum (Adam's β1)
        moves the opposite way between ``moms``.
        """
        if epochs < 1:
            raise ConfigError(f"epochs={epochs}: train for at least 1 epoch")
        if not 0.0 < pct_start < 1.0:
            raise ConfigError(f"pct_start={pct_start}: use a fraction between 0 and 1")
        train_loader, valid_loader = self._dataloaders()
        if len(train_loader) == 0:
            raise DataError("no training images; add images to the class folders")
        optimizer, max_lrs = self._optimizer(lr_max)
        # PyTorch's OneCycleLR ends at initial_lr / final_div_factor; fastai ends at
        # lr_max / final_div, so the factor given to PyTorch is final_div / div.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=max_lrs,
            total_steps=epochs * len(train_loader),
            pct_start=pct_start,
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=moms[1],
            max_momentum=moms[0],
            div_factor=div,
            final_div_factor=final_div / div,
        )
        started = time.perf_counter()
        records = fit(
            self.model,
            train_loader,
            valid_loader,
            optimizer,
            scheduler,
            epochs,
            loss_fn=self.loss_fn,
            device=self.device,
            logger=self.logger,
            frozen=self.frozen,
            train_bn=self.train_bn,
            phase=phase or ("frozen" if self.frozen else "all"),
            first_epoch=len(self.history),
        )
        self.train_seconds += time.perf_counter() - started
        self.history.extend(records)
        self.fits.append(
            {
                "epochs": epochs,
                "lr_max": _as_list(lr_max),
                "frozen": self.frozen,
                "pct_start": pct_start,
                "div": div,
            }
        )
        return records

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        *,
        freeze_epochs: int = 1,
        lr_mult: float = 100.0,
        pct_start: float = 0.3,
        div: float = 5.0,
    ) -> list[EpochRecord]:
        """fastai's recipe: train the head alone, then everything with discriminative rates.

        1. freeze the body; one-cycle for ``freeze_epochs`` at ``base_lr`` with
           ``pct_start=0.99`` (nearly all warm-up);
        2. halve ``base_lr``; unfreeze; one-cycle for ``epochs`` with rates from
           ``base_lr/lr_mult`` (first layers) to ``base_lr`` (head).
        """
        if epochs < 1:
            raise ConfigError(f"epochs={epochs}: fine-tune for at least 1 epoch")
        records: list[EpochRecord] = []
        if freeze_epochs > 0:
            self.freeze()
            records += self.fit_one_cycle(freeze_epochs, base_lr, pct_start=0.99, phase="frozen")
        base_lr /= 2
        self.unfreeze()
        records += self.fit_one_cycle(
            epochs, (base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, phase="unfrozen"
        )
        return records

    # -- using the model -----------------------------------------------------------------

    def validate(self) -> Metrics:
        """Loss, error rate and accuracy on the validation set."""
        _, valid_loader = self._dataloaders()
        return evaluate(self.model, valid_loader, loss_fn=self.loss_fn, device=self.device)

    @torch.inference_mode()
    def predict_batch(
        self, sources: Sequence[ImageSource], batch_size: int = 32
    ) -> list[Prediction]:
        """Predict several images (paths, bytes or PIL images), with the validation transform."""
        self.model.eval()
        results: list[Prediction] = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            inputs = np.stack([preprocess(open_image(s), self.preprocess) for s in chunk])
            logits = self.model(torch.from_numpy(inputs).to(self.device)).float().cpu().numpy()
            results += predictions_from_logits(logits, self.class_names)
        return results

    def predict(self, source: ImageSource) -> Prediction:
        """Predict one image (path, bytes or PIL image)."""
        return self.predict_batch([source])[0]

    def interpret(self, split: str = "valid", *, batch_size: int | None = None) -> Interpretation:
        """Confusion matrix, top losses, Grad-CAM and the model card for ``split``
        (valid, train or all): see :class:`ursa.interpret.Interpretation`.

        ``ursa.interpret`` is a later stage than ``ursa.train`` (imports flow from later
        stages to earlier ones), so it is imported here, inside the method, never at the
        top of this module (the import above is for type checkers only).
        """
        from ursa.interpret.interpretation import Interpretation

        return Interpretation.from_learner(self, split, batch_size=batch_size)

    def export(self, path: str | Path) -> Path:
        """Write the model as a ``.ursa`` bundle (atomic; no pickle)."""
        from ursa.train.export import export_learner

        return export_learner(self, Path(path))


def _as_list(lr: LearningRate) -> list[float]:
    return [float(v) for v in lr] if isinstance(lr, tuple) else [float(lr)]


def _group_rates(lr: LearningRate, groups: int) -> list[float]:
    """One rate per layer group: a float for all, or (low, high) spaced geometrically."""
    if isinstance(lr, tuple):
        low, high = lr
        if not (low > 0 and high > 0 and low <= high):
            raise ConfigError(f"lr={lr}: use (low, high) with 0 < low <= high")
        if groups == 1:
            return [high]
        return [float(v) for v in np.geomspace(low, high, groups)]
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr}: use a positive learning rate such as 2e-3")
    return [float(lr)] * groups
