"""The training loop: one ``fit()`` that reads top to bottom, and ``evaluate()``.

Every extension is an explicit parameter (:class:`FitOptions`, an optional Accelerate
``accelerator``, an optional ``save_checkpoint``); there are no callbacks or events.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from ursa.core.errors import ConfigError
from ursa.models.backbones import classifier_of
from ursa.train.metrics import METRIC_NAMES, Metrics, classification_metrics, improved
from ursa.train.progress import EpochRecord, TrainingLogger

if TYPE_CHECKING:
    from accelerate import Accelerator

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Precision = Literal["fp32", "bf16", "fp16"]

__all__ = ["BestTracker", "FitOptions", "Metrics", "evaluate", "fit", "predict_logits"]


@dataclass(frozen=True)
class FitOptions:
    """How each optimizer step is taken, and when training stops early."""

    accumulate: int = 1
    """Batches whose gradients add up before one optimizer step (a larger effective batch)."""
    clip_norm: float | None = None
    """Clip the global gradient norm to this before each step; None: no clipping."""
    precision: Precision = "fp32"
    """fp32, or bf16 / fp16 autocast (bf16 on CUDA or the CPU, fp16 on CUDA only; fp16 uses a
    loss scaler)."""
    eval_precision: Precision | None = None
    """The precision of the passes without gradients (validation, the head fit's features);
    None: ``precision``. The Learner's ``precision="auto"`` sets it apart where bf16
    inference pays and bf16 training steps do not: small batches on a CPU (see
    ``ursa.train.learner.auto_precision``)."""
    channels_last: bool = False
    """Feed NHWC batches (the model must be converted too; measured 25 % faster training
    steps for EfficientNet-Lite0 on a CPU)."""
    monitor: str = "error_rate"
    """Metric for early stopping and keep-best: valid_loss, error_rate, accuracy or macro_f1.
    error_rate by default, ties keeping the earlier epoch: on Fashion-MNIST at 100 a class
    valid_loss preferred a fine-tuned epoch at 13.2 % validation error to the head fit's
    11.6 % (its loss was lower by 1 %), and that model lost to the linear probe on test."""
    patience: int | None = None
    """Stop after this many epochs without improvement of ``monitor``; None: never."""
    min_delta: float = 0.0
    """Smallest change of ``monitor`` that counts as an improvement."""
    keep_best: bool = False
    """At the end, restore the weights of the epoch with the best ``monitor``."""
    keep_bn_stats: bool = True
    """Batch norm keeps the running statistics it has (the pretrained ones) instead of
    re-estimating them from each training batch (the Learner's default: on when the weights
    are pretrained); its scale and
    shift still learn. The head fit's features were computed with those statistics, and
    small batches estimate them badly: measured on Fashion-MNIST, 100 images a class, two
    epochs after the head fit ended at 12.6 % error with them kept, 29.0 % re-estimated."""

    @property
    def inference_precision(self) -> Precision:
        """The precision the passes without gradients run in."""
        return self.eval_precision or self.precision

    def __post_init__(self) -> None:
        problems = []
        if self.accumulate < 1:
            problems.append(f"accumulate={self.accumulate}: use 1 or more batches")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm={self.clip_norm}: use a positive norm such as 1.0")
        if self.precision not in ("fp32", "bf16", "fp16"):
            problems.append(f"precision={self.precision!r}: use fp32, bf16 or fp16")
        if self.eval_precision not in (None, "fp32", "bf16", "fp16"):
            problems.append(f"eval_precision={self.eval_precision!r}: use fp32, bf16, fp16 or None")
        if self.monitor not in METRIC_NAMES:
            problems.append(f"monitor={self.monitor!r}: use one of {', '.join(METRIC_NAMES)}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience={self.patience}: use 1 or more epochs, or None")
        if self.min_delta < 0:
            problems.append(f"min_delta={self.min_delta}: use 0 or more")
        if problems:
            raise ConfigError("invalid training settings:\n  " + "\n  ".join(problems))


@dataclass
class BestTracker:
    """The best value of the monitored metric so far, and (for keep-best) its weights."""

    monitor: str
    best: float | None = None
    best_epoch: int = -1
    stale_epochs: int = 0
    """Epochs since the last improvement."""
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, epoch: int, metrics: Metrics, model: nn.Module, options: FitOptions) -> None:
        value = metrics.value(self.monitor)
        if improved(self.monitor, value, self.best, options.min_delta):
            self.best, self.best_epoch, self.stale_epochs = value, epoch, 0
            if options.keep_best:
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.stale_epochs += 1


def set_train_mode(
    model: nn.Module, *, frozen: bool, train_bn: bool = True, keep_bn_stats: bool = False
) -> None:
    """Training mode. When ``frozen`` and not ``train_bn``, the body stays in eval mode so
    its batch-norm statistics stay as pretrained (only the head learns; dropout still works).
    ``keep_bn_stats``: every batch-norm layer normalises with its running statistics and
    does not update them (its scale and shift still learn; see ``FitOptions``)."""
    model.train()
    if frozen and not train_bn:
        classifier = classifier_of(unwrap(model))
        for child in unwrap(model).children():
            if child is not classifier:
                child.eval()
    if keep_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


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
    options: FitOptions | None = None,
    frozen: bool = False,
    train_bn: bool = True,
    phase: str = "",
    first_epoch: int = 0,
    start_epoch: int = 0,
    tracker: BestTracker | None = None,
    accelerator: Accelerator | None = None,
    save_checkpoint: Callable[[int, BestTracker, list[EpochRecord]], None] | None = None,
    batch_augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[EpochRecord]:
    """Train epochs ``start_epoch`` .. ``epochs - 1`` over ``train_batches``, validating after each.

    The scheduler steps once per optimizer step (one-cycle is a per-step schedule).
    ``first_epoch`` numbers the records (epochs of earlier fits); ``start_epoch`` > 0
    continues a fit restored from a checkpoint. ``save_checkpoint(epochs_done, tracker,
    records)`` runs after each validated epoch. ``batch_augment`` augments each training
    batch on the device (:meth:`ursa.data.ImageData.batch_augmenter`; None: the loader did).
    Returns one :class:`EpochRecord` per epoch run.
    """
    options = options or FitOptions()
    tracker = tracker or BestTracker(options.monitor)
    scaler = torch.amp.GradScaler(device.type, enabled=_autocast_dtype(device, options) is not None
                                  and options.precision == "fp16")  # fmt: skip
    steps = len(train_batches) if isinstance(train_batches, Sized) else 0
    records = []
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        set_train_mode(model, frozen=frozen, train_bn=train_bn, keep_bn_stats=options.keep_bn_stats)
        logger.start_epoch(first_epoch + epoch, steps, phase)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for step, (images, labels) in enumerate(train_batches):
            images = _to_device(images, device, options.channels_last)  # (B, 3, H, W)
            if batch_augment is not None:  # the whole batch at once, where it is (the GPU)
                images = batch_augment(images)
            labels = labels.to(device, non_blocking=True)  # (B,)
            # Gradients add up over `accumulate` batches; between optimizer steps DDP
            # skips its all-reduce (no_sync), as the sum is only needed at the step.
            update = (step + 1) % options.accumulate == 0 or step + 1 == steps
            with _no_sync(accelerator, model, update), autocast_context(device, options):
                logits = model(images)  # (B, num_classes)
                loss = loss_fn(logits.float(), labels)
            scaler.scale(loss / options.accumulate).backward()
            if update:
                if options.clip_norm is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not scaled ones
                    nn.utils.clip_grad_norm_(model.parameters(), options.clip_norm)
                scaler.step(optimizer)  # skipped by the scaler if fp16 gradients overflowed
                scaler.update()
                scheduler.step()
                # set_to_none frees gradient memory and skips a memset per parameter
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(labels)
            seen += len(labels)
            logger.step(step, loss.item())
        train_loss = _mean_over_processes(loss_sum, seen, accelerator)
        valid = evaluate(
            model, valid_batches, loss_fn=loss_fn, device=device, accelerator=accelerator,
            channels_last=options.channels_last,
            autocast=lambda: autocast_context(device, options, training=False),
            on_batch=getattr(logger, "valid_step", None),  # loggers older than the hook: none
        )  # fmt: skip
        record = EpochRecord(
            epoch=first_epoch + epoch,
            phase=phase,
            train_loss=train_loss,
            valid_loss=valid.loss,
            error_rate=valid.error_rate,
            accuracy=valid.accuracy,
            seconds=time.perf_counter() - started,
            macro_f1=valid.macro_f1,
        )
        tracker.update(first_epoch + epoch, valid, unwrap(model), options)
        records.append(record)
        if save_checkpoint is not None:
            save_checkpoint(
                epoch + 1, tracker, records
            )  # before reporting: a Ctrl-C now loses nothing
        logger.end_epoch(record)
        if options.patience is not None and tracker.stale_epochs >= options.patience:
            break  # early stopping: `monitor` has not improved for `patience` epochs
    if options.keep_best and tracker.state is not None:
        unwrap(model).load_state_dict(tracker.state)
    return records


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    batches: Batches,
    *,
    device: torch.device,
    accelerator: Accelerator | None = None,
    channels_last: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C), labels (N,)) over ``batches``, on the CPU, model in eval mode,
    run inside ``autocast()`` (the caller's precision, such as that of the passes
    without gradients; logits come back as float32).
    ``on_batch(step, steps)`` after each batch (``steps``: 0 when ``batches`` has no length).

    Under Accelerate each process runs its share and the results are gathered;
    ``gather_for_metrics`` drops the samples repeated to pad the last batch, so
    every validation image counts exactly once.
    """
    model.eval()
    all_logits, all_labels = [], []
    steps = len(batches) if isinstance(batches, Sized) else 0
    for step, (images, labels) in enumerate(batches):
        with autocast():
            logits = model(_to_device(images, device, channels_last)).float()  # (B, C)
        labels = labels.to(device)  # (B,)
        if accelerator is not None:
            logits, labels = accelerator.gather_for_metrics((logits, labels))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        if on_batch is not None:
            on_batch(step, steps)
    if not all_logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate(
    model: nn.Module,
    batches: Batches,
    *,
    loss_fn: nn.Module,
    device: torch.device,
    accelerator: Accelerator | None = None,
    channels_last: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    on_batch: Callable[[int, int], None] | None = None,
) -> Metrics:
    """Loss, error rate, accuracy, per-class scores, macro-F1 and top-k over ``batches``
    (NaN when there are none), the model run inside ``autocast()``; ``on_batch`` as for
    :func:`predict_logits`."""
    logits, labels = predict_logits(
        model,
        batches,
        device=device,
        accelerator=accelerator,
        channels_last=channels_last,
        autocast=autocast,
        on_batch=on_batch,
    )
    if len(labels) == 0:
        return classification_metrics(logits, labels, math.nan)
    with torch.inference_mode():  # on the CPU, where the gathered logits are
        loss = float(copy.deepcopy(loss_fn).cpu()(logits, labels))
    return classification_metrics(logits, labels, loss)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or similar) wrapper."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=memory_format)


def _autocast_dtype(
    device: torch.device, options: FitOptions, *, training: bool = True
) -> torch.dtype | None:
    """The autocast dtype, or None for fp32, of a training pass (``training``) or of a pass
    without gradients (``options.eval_precision`` where set). bf16 runs on CUDA and on the
    CPU (fast where the CPU has bf16 instructions: see :func:`cpu_has_bf16`); fp16 is for
    CUDA only."""
    precision = options.precision if training else options.inference_precision
    if precision == "fp32":
        return None
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX). oneDNN also runs bf16
    on plain AVX-512 by emulation, slower than fp32, so that does not count."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def autocast_context(
    device: torch.device, options: FitOptions, *, training: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """The mixed-precision context the model runs in (nothing for fp32): of the training
    steps, or (``training=False``) of the passes without gradients."""
    dtype = _autocast_dtype(device, options, training=training)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _no_sync(
    accelerator: Accelerator | None, model: nn.Module, update: bool
) -> contextlib.AbstractContextManager[Any]:
    if accelerator is None or update:
        return contextlib.nullcontext()
    return accelerator.no_sync(model)


def _mean_over_processes(total: torch.Tensor, count: int, accelerator: Accelerator | None) -> float:
    """Mean training loss over every process's batches."""
    if accelerator is None:
        return float(total) / max(count, 1)
    both = torch.stack(
        [total, torch.tensor(float(count), dtype=torch.float64, device=total.device)]
    )
    summed = accelerator.reduce(both, reduction="sum")
    return float(summed[0]) / max(float(summed[1]), 1.0)
