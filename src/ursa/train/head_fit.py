"""Head first: fit the new classifier on the frozen body's features, before the body moves.

Known as linear probing then fine-tuning ("LP-FT"). A freshly initialised head trained
by a few SGD steps on a few hundred images barely leaves chance; the same head fitted
to convergence on the frozen body's pooled features is the best linear classifier
those features allow, in seconds. Fine-tuning then starts from a head that already
agrees with the body, so the first steps refine the features instead of undoing them.

1. :func:`extract_features`: the pooled pre-logit features of every training image as
   the validation transform shows it, and its mirror image where the data may be
   flipped, in inference mode (bf16 where the device has it), stored as float16.
   Random-crop views of the training augmentation are possible but not the default:
   measured on Fashion-MNIST (10 a class), 8 such views made the head 1-4 points worse
   than the plain view alone, while the mirror view helped a little.
2. :func:`choose_weight_decay`: k-fold cross-validation on the training features
   (the views of one image stay in one fold) over a grid of L2 strengths; the
   validation split is never looked at.
3. :func:`fit_linear_head`: full-batch L-BFGS on the (convex) cross-entropy plus L2,
   on the features divided by their overall RMS (one number, so L2 strengths mean the
   same for every backbone; per-feature standardisation measured 4 points worse, as it
   lifts the many near-silent features to the level of the informative ones); the scale
   is folded back into the weights, so the result drops into the model's own
   ``nn.Linear``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ursa.core.errors import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator

WEIGHT_DECAYS = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
"""The L2 strengths cross-validation chooses from (on standardised features: a mean
cross-entropy plus ``wd / 2 * ||W||²``)."""

CV_MAX_IMAGES = 2000
"""Cross-validation runs on at most this many training images (stratified); the final
fit always uses all of them."""

CHUNK = 16384
"""Feature rows per chunk in the full-batch fit (bounds the float32 copy in memory)."""


@dataclass(frozen=True)
class Features:
    """Pooled features with their labels; ``groups`` numbers the source image of each row
    (the views of one image share it)."""

    values: np.ndarray
    """(N, D) float16."""
    labels: np.ndarray
    """(N,) int64 class indices."""
    groups: np.ndarray
    """(N,) int64 image numbers."""


@dataclass(frozen=True)
class HeadFit:
    """A fitted linear head and how it was chosen."""

    weight: torch.Tensor
    """(C, D): for the raw (unstandardised) features."""
    bias: torch.Tensor
    """(C,)"""
    weight_decay: float
    """The L2 strength used (chosen by cross-validation unless given)."""
    train_loss: float
    """Mean cross-entropy of the final fit on its training features."""
    cv_loss: float | None
    """Mean held-out cross-entropy of the chosen strength; None when not cross-validated."""
    rows: int
    """Feature rows fitted (images x views)."""
    seconds: float

    def apply_to(self, classifier: nn.Module) -> None:
        """Copy the head into the model's ``nn.Linear`` classifier."""
        if not isinstance(classifier, nn.Linear):
            raise ConfigError(
                f"the head fit needs a linear classifier, this model has "
                f"{type(classifier).__name__}; use head='epochs' (frozen SGD epochs) instead"
            )
        with torch.no_grad():
            classifier.weight.copy_(self.weight.to(classifier.weight))
            classifier.bias.copy_(self.bias.to(classifier.bias))


def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, D): the body's pooled output, what the classifier reads."""
    body = model.forward_features(images)  # type: ignore[operator]
    return model.forward_head(body, pre_logits=True)  # type: ignore[operator]


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Pass = tuple[Batches, Callable[[torch.Tensor], torch.Tensor] | None]
"""A loader over the training images and what to do to each batch on the device first
(mirror it, augment it on the GPU), or None."""


def mirror(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) flipped left to right."""
    return images.flip(-1)


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    passes: Iterable[Pass],
    *,
    device: torch.device,
    channels_last: bool,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    accelerator: Accelerator | None = None,
) -> Features:
    """Features of each pass over the same images, in order (unshuffled loaders), so row
    ``i`` of every pass is image ``i`` (its group number).

    Under Accelerate each process runs its shard and the results are gathered, so every
    process ends with every row, in the loader's order, computed once.
    """
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    values, labels, groups = [], [], []
    for batches, transform in passes:
        seen = 0
        for images, targets in batches:
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            if transform is not None:
                images = transform(images)
            with autocast():
                features = pooled_features(model, images).float()  # (B, D)
            targets = targets.to(device)
            if accelerator is not None:
                features, targets = accelerator.gather_for_metrics((features, targets))
            values.append(features.cpu().to(torch.float16).numpy())
            labels.append(targets.cpu().numpy().astype(np.int64))
            groups.append(np.arange(seen, seen + len(targets), dtype=np.int64))
            seen += len(targets)
    if not values:
        raise ConfigError("no images to compute features of")
    return Features(np.concatenate(values), np.concatenate(labels), np.concatenate(groups))


def _scale(values: np.ndarray) -> float:
    """The root mean square of every feature value (computed in chunks), floored."""
    total = 0.0
    for start in range(0, len(values), CHUNK):
        chunk = torch.from_numpy(values[start : start + CHUNK]).double()
        total += float((chunk * chunk).sum())
    return max(math.sqrt(total / max(values.size, 1)), 1e-6)


def fit_linear(
    features: Features,
    num_classes: int,
    weight_decay: float,
    *,
    loss_fn: nn.Module | None = None,
    rows: np.ndarray | None = None,
    max_iter: int = 300,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(weight (C, D), bias (C,), final mean loss without the penalty) minimising mean
    ``loss_fn`` + ``wd/2 ||W||²``
    on the features divided by their RMS (``rows``: a subset of them), by full-batch L-BFGS.

    The problem is convex, so the result does not depend on the starting point (zeros);
    the returned weights apply to the raw features."""
    if weight_decay < 0 or not math.isfinite(weight_decay):
        raise ConfigError(f"weight_decay={weight_decay}: use 0 or more")
    loss_fn = copy.deepcopy(loss_fn).cpu() if loss_fn is not None else nn.CrossEntropyLoss()
    values = features.values if rows is None else features.values[rows]
    labels = torch.from_numpy(features.labels if rows is None else features.labels[rows])
    scale = _scale(values)
    weight = torch.zeros(num_classes, values.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )  # fmt: skip
    count = len(values)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = torch.zeros(())
        for start in range(0, count, CHUNK):
            chunk = torch.from_numpy(values[start : start + CHUNK]).float() / scale
            logits = chunk @ weight.T + bias  # (n, C)
            part = loss_fn(logits, labels[start : start + CHUNK]) * (len(chunk) / count)
            part.backward()
            total += part.detach()
        penalty = 0.5 * weight_decay * (weight * weight).sum()
        penalty.backward()
        return total + penalty.detach()

    with torch.enable_grad():
        optimizer.step(closure)
        # step() returns the loss at the start; this is the data term at the end
        loss = float(closure()) - 0.5 * weight_decay * float(weight.detach().square().sum())
    return weight.detach() / scale, bias.detach(), loss


def _folds(features: Features, folds: int) -> np.ndarray:
    """A fold number per row: images dealt round-robin within their class (stratified),
    every view of an image in its image's fold."""
    image_label: dict[int, int] = {}
    for group, label in zip(features.groups.tolist(), features.labels.tolist(), strict=True):
        image_label.setdefault(group, label)
    seen: dict[int, int] = {}
    image_fold = {}
    for group in sorted(image_label):
        label = image_label[group]
        image_fold[group] = seen.get(label, 0) % folds
        seen[label] = seen.get(label, 0) + 1
    return np.array([image_fold[g] for g in features.groups.tolist()], dtype=np.int64)


def _cv_subset(features: Features, max_images: int, seed: int) -> np.ndarray:
    """Rows of at most ``max_images`` images, the same share of every class."""
    images = np.unique(features.groups)
    if len(images) <= max_images:
        return np.arange(len(features.groups))
    rng = np.random.default_rng(seed)
    first_row = {g: i for i, g in reversed(list(enumerate(features.groups.tolist())))}
    by_class: dict[int, list[int]] = {}
    for group in images.tolist():
        by_class.setdefault(int(features.labels[first_row[group]]), []).append(group)
    share = max_images / len(images)
    chosen: set[int] = set()
    for members in by_class.values():
        take = max(1, round(len(members) * share))
        chosen.update(rng.choice(members, size=take, replace=False).tolist())
    return np.flatnonzero(np.isin(features.groups, list(chosen)))


def choose_weight_decay(
    features: Features,
    num_classes: int,
    *,
    grid: Iterable[float] = WEIGHT_DECAYS,
    folds: int = 5,
    seed: int = 0,
    loss_fn: nn.Module | None = None,
) -> tuple[float, float | None]:
    """(weight decay, its mean held-out cross-entropy) by stratified k-fold
    cross-validation over images (at most :data:`CV_MAX_IMAGES` of them; fitted with
    ``loss_fn``, scored by plain cross-entropy); with fewer than
    2 images in some class, no folds can be made: the middle of the grid, and None."""
    candidates = sorted(grid)
    subset = _cv_subset(features, CV_MAX_IMAGES, seed)
    sub = Features(features.values[subset], features.labels[subset], features.groups[subset])
    per_class = np.bincount(
        np.unique(np.stack([sub.labels, sub.groups]), axis=1)[0], minlength=num_classes
    )
    folds = min(folds, int(per_class[per_class > 0].min()))
    if folds < 2:
        return candidates[len(candidates) // 2], None
    fold_of = _folds(sub, folds)
    held_out = nn.CrossEntropyLoss(reduction="sum")
    scores = []
    for weight_decay in candidates:
        total = 0.0
        for fold in range(folds):
            train_rows = np.flatnonzero(fold_of != fold)
            test_rows = np.flatnonzero(fold_of == fold)
            weight, bias, _ = fit_linear(
                sub, num_classes, weight_decay, loss_fn=loss_fn, rows=train_rows, max_iter=100
            )
            with torch.no_grad():
                logits = torch.from_numpy(sub.values[test_rows]).float() @ weight.T + bias
                total += float(held_out(logits, torch.from_numpy(sub.labels[test_rows])))
        scores.append(total / len(sub.labels))
    best = int(np.argmin(scores))
    return candidates[best], scores[best]


def fit_linear_head(
    features: Features,
    num_classes: int,
    *,
    loss_fn: nn.Module | None = None,
    weight_decay: float | None = None,
    seed: int = 0,
) -> HeadFit:
    """The head for ``features``: ``weight_decay`` chosen by cross-validation unless given,
    then one fit on every row."""
    started = time.perf_counter()
    cv_loss = None
    if weight_decay is None:
        weight_decay, cv_loss = choose_weight_decay(
            features, num_classes, seed=seed, loss_fn=loss_fn
        )
    weight, bias, loss = fit_linear(features, num_classes, weight_decay, loss_fn=loss_fn)
    return HeadFit(
        weight=weight,
        bias=bias,
        weight_decay=weight_decay,
        train_loss=loss,
        cv_loss=cv_loss,
        rows=len(features.labels),
        seconds=time.perf_counter() - started,
    )
