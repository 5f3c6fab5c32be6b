"""``ursa demo``: the whole path on scikit-learn's handwritten digits, offline.

The 1,797 8×8 digits of ``sklearn.datasets.load_digits`` (real handwriting that
ships inside scikit-learn) are written as PNG files in one folder per class; a
few per class are held back, never seen in training or validation, to show
``predict`` on new images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ursa.core.prediction import Prediction


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced."""

    bundle: Path
    error_rate: float
    holdout: list[tuple[Path, str, Prediction]]
    """(file, true label, prediction) for each held-back image."""


def write_digits(
    folder: Path, *, holdout_per_class: int = 2, side: int = 32
) -> list[tuple[Path, str]]:
    """Write load_digits as ``folder/data/<digit>/NNNN.png`` (dark ink on white, ``side`` px)
    and ``folder/holdout/NNNN.png``; returns the held-back (file, label) pairs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    data_dir, holdout_dir = folder / "data", folder / "holdout"
    holdout: list[tuple[Path, str]] = []
    held = dict.fromkeys(range(10), 0)
    for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = (255 - image * (255 / 16)).clip(0, 255).astype(np.uint8)  # 0..16 ink → gray
        picture = Image.fromarray(pixels, mode="L").resize((side, side), Image.Resampling.BICUBIC)
        label = str(int(target))
        if held[int(target)] < holdout_per_class:
            held[int(target)] += 1
            path = holdout_dir / f"{index:04d}.png"
            holdout.append((path, label))
        else:
            path = data_dir / label / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
    return holdout


def run_demo(
    folder: Path,
    *,
    epochs: int = 8,
    size: int = 96,
    arch: str = "efficientnet_lite0",
    logger: object | None = None,
) -> DemoResult:
    """Write the digits, fine-tune ``arch`` on them, export, reload, predict the held-back ones."""
    from ursa.data.core import ImageData
    from ursa.export.model import load
    from ursa.train.learner import Learner

    holdout = write_digits(folder)
    # Digits have a handedness (no flips) and fill the frame (gentle crops). The
    # 8×8 scans are far from ImageNet photos, so the rate is higher than the
    # usual 2e-3: the body has more to unlearn.
    data = ImageData.from_folder(
        folder / "data",
        valid_pct=0.2,
        seed=42,
        size=size,
        augment="no_flip",
        min_scale=0.8,
        batch_size=32,
    )
    learner = Learner(data, arch=arch, logger=logger)  # type: ignore[arg-type]
    # Eight epochs at that rate take the body far from the head fit, and the average of
    # the two ends, fine_tune's default for a short fine-tune, validated worse than the
    # last epoch (2.54 % against 0.85 %, docs/getting-started.md): keep the best epoch.
    learner.fine_tune(epochs, base_lr=1e-2, average=False)
    bundle = learner.export(folder / "digits.ursa")
    model = load(bundle)
    predictions = model.predict_batch([path for path, _ in holdout])
    return DemoResult(
        bundle=bundle,
        # The exported model's error (keep-best may have kept an earlier epoch or the head).
        error_rate=(
            learner.final_metrics.error_rate
            if learner.final_metrics is not None
            else learner.history[-1].error_rate
        ),
        holdout=[(path, label, p) for (path, label), p in zip(holdout, predictions, strict=True)],
    )
