"""The training loop: one ``fit()`` that reads top to bottom, and ``evaluate()``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sized
from dataclasses import dataclass

import torch
from torch import nn

from ursa.models.backbones import classifier_of
from ursa.train.progress import EpochRecord, TrainingLogger

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Metrics:
    """Validation results."""

    loss: float
    error_rate: float
    accuracy: float
    count: int


def set_train_mode(model: nn.Module, *, frozen: bool, train_bn: bool = True) -> None:
    """Training mode. When ``frozen`` and not ``train_bn``, the body stays in eval mode so
    its batch-norm statistics stay as pretrained (only the head learns; dropout still works)."""
    model.train()
    if frozen and not train_bn:
        classifier = classifier_of(model)
        for child in model.children():
            if child is not classifier:
                child.eval()


def fit(
    model: nn.Module,
    train_batches: Batches,
    valid_batches: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    *,
    loss_fn: nn.Module,
    device: torch.device,
    logger: TrainingLogger,
    frozen: bool = False,
    train_bn: bool = True,
    phase: str = "",
    first_epoch: int = 0,
) -> list[EpochRecord]:
    """Train for ``epochs`` passes over ``train_batches``, validating after each.

    The scheduler steps every batch (one-cycle is a per-batch schedule).
    Returns one :class:`EpochRecord` per epoch.
    """
    records = []
    steps = len(train_batches) if isinstance(train_batches, Sized) else 0
    for epoch in range(first_epoch, first_epoch + epochs):
        started = time.perf_counter()
        set_train_mode(model, frozen=frozen, train_bn=train_bn)
        logger.start_epoch(epoch, steps, phase)
        loss_sum, seen = 0.0, 0
        for step, (images, labels) in enumerate(train_batches):
            images = images.to(device, non_blocking=True)  # (B, 3, H, W)
            labels = labels.to(device, non_blocking=True)  # (B,)
            logits = model(images)  # (B, num_classes)
            loss = loss_fn(logits, labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            # set_to_none frees gradient memory and skips a memset per parameter
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss.item()
            loss_sum += batch_loss * len(labels)
            seen += len(labels)
            logger.step(step, batch_loss)
        valid = evaluate(model, valid_batches, loss_fn=loss_fn, device=device)
        record = EpochRecord(
            epoch=epoch,
            phase=phase,
            train_loss=loss_sum / max(seen, 1),
            valid_loss=valid.loss,
            error_rate=valid.error_rate,
            accuracy=valid.accuracy,
            seconds=time.perf_counter() - started,
        )
        logger.end_epoch(record)
        records.append(record)
    return records


@torch.inference_mode()
def predict_logits(
    model: nn.Module, batches: Batches, *, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C), labels (N,)) over ``batches``, on the CPU, model in eval mode."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in batches:
        all_logits.append(model(images.to(device)).float().cpu())  # (B, C)
        all_labels.append(labels)
    if not all_logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate(
    model: nn.Module, batches: Batches, *, loss_fn: nn.Module, device: torch.device
) -> Metrics:
    """Loss, error rate and accuracy over ``batches`` (NaN when there are none)."""
    logits, labels = predict_logits(model, batches, device=device)
    if len(labels) == 0:
        nan = float("nan")
        return Metrics(loss=nan, error_rate=nan, accuracy=nan, count=0)
    loss = float(loss_fn(logits, labels))
    accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return Metrics(loss=loss, error_rate=1.0 - accuracy, accuracy=accuracy, count=len(labels))
