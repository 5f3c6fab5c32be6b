"""fp32 against bf16 autocast on this CPU, per input size: where does bf16 pay?

    .venv/bin/python benchmarks/precision.py [--sizes 64 96 128 160 224] [--batch 32]
        [--steps 6] [--out precision.jsonl]

For each input side, in one process, fp32 and then bf16 (so that a change of load hits
neighbouring rows alike): EfficientNet-Lite0 (the offline pretrained weights, a 10-class
head, channels-last and in the training mode ursa fine-tunes in: batch norm keeps its
pretrained statistics, ``set_train_mode(keep_bn_stats=True)``) runs ``--steps`` timed
training steps (forward, cross entropy, backward, SGD step) and as many inference passes
(``torch.inference_mode``) on a random batch, after two warm-up steps each. Reported: the
median seconds per step and the bf16/fp32 ratio (below 1: bf16 is faster). One thread
count: torch's default (every core).

This is the measurement behind ``precision="auto"`` on the CPU (``ursa.train.learner``):
bf16 training steps only from the pixels a batch (batch size x side²) where they stop
being slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ursa.train.config import Precision
from ursa.train.loop import FitOptions, autocast_context, cpu_has_bf16, set_train_mode


def _median_seconds(step: Callable[[], None], steps: int) -> float:
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    model: nn.Module, size: int, batch: int, steps: int, precision: Precision
) -> dict[str, float]:
    """Median seconds of one training step and one inference pass at ``size`` px, under
    the autocast ursa uses for ``precision`` (fp32 or bf16)."""
    options = FitOptions(precision=precision)
    cpu = torch.device("cpu")
    images = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def train_step() -> None:
        set_train_mode(model, frozen=False, keep_bn_stats=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(cpu, options):
            loss = loss_fn(model(images).float(), targets)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast_context(cpu, options, training=False):
            model(images)

    return {"train_s": _median_seconds(train_step, steps), "infer_s": _median_seconds(infer, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 192, 224])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from ursa.models.backbones import create_model

    model = create_model("efficientnet_lite0", 10).to(memory_format=torch.channels_last)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, bf16 instructions: {cpu_has_bf16()}, load "
        f"{os.getloadavg()[0]:.2f}, batch {args.batch}"
    )
    print("| side | fp32 train s | bf16 train s | ratio | fp32 infer s | bf16 infer s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        fp32 = measure(model, size, args.batch, args.steps, "fp32")
        bf16 = measure(model, size, args.batch, args.steps, "bf16")
        row = {
            "size": size,
            "batch": args.batch,
            "fp32": fp32,
            "bf16": bf16,
            "load": os.getloadavg()[0],
        }
        print(
            f"| {size} | {fp32['train_s']:.3f} | {bf16['train_s']:.3f} | "
            f"{bf16['train_s'] / fp32['train_s']:.2f} | {fp32['infer_s']:.3f} | "
            f"{bf16['infer_s']:.3f} | {bf16['infer_s'] / fp32['infer_s']:.2f} |",
            flush=True,
        )
        if args.out is not None:
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
