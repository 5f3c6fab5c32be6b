"""Augmentation cost on this machine: per image (loader workers) or per batch (training loop).

    python benchmarks/augment.py [--images 512] [--size 224] [--batch-size 64]

Both paths apply the same ``default`` preset (flip, rotate, zoom, warp, lighting) after
the same random resized crop of in-memory RGB images (no file decoding, so only the
augmentation differs). Reports images/s for each, on one CPU thread as in a loader
worker and with torch's default threads as in the main process, and on CUDA when
there is a GPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from ursa.core.preprocess import PreprocessConfig
from ursa.data.batch_augment import AugmentSettings, BatchAugment
from ursa.data.transforms import train_transform


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return [Image.fromarray(np.roll(base, k * 7, axis=1)) for k in range(count)]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f} images/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    config = PreprocessConfig(size=args.size, resize="crop")
    pictures = images(args.images)
    per_image = train_transform(config, "default")
    crop_only = train_transform(config, "default", batch_augment=True)
    augment = BatchAugment(AugmentSettings(), config.mean, config.std)
    default_threads = torch.get_num_threads()
    print(f"{args.images} images of 640x480 -> {args.size}px, batches of {args.batch_size}")
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        cropped = [crop_only(p) for p in pictures]
        crop_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for p in pictures:
            per_image(p)
        item_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, len(cropped), args.batch_size):
            augment(torch.stack(cropped[start : start + args.batch_size]))
        batch_seconds = time.perf_counter() - started
        print(f"{threads} thread(s): crop only            {rate(len(pictures), crop_seconds)}")
        print(f"{threads} thread(s): crop + augment/image {rate(len(pictures), item_seconds)}")
        print(f"{threads} thread(s): augment/batch (CPU)  {rate(len(pictures), batch_seconds)}"
              f"  (+ the crop)")  # fmt: skip
    if torch.cuda.is_available():
        on_gpu = augment.to("cuda")
        batches = [
            torch.stack(cropped[s : s + args.batch_size]).cuda()
            for s in range(0, len(cropped), args.batch_size)
        ]
        on_gpu(batches[0])  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        for batch in batches:
            on_gpu(batch)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        print(f"CUDA: augment/batch                {rate(len(cropped), seconds)}")


if __name__ == "__main__":
    main()
