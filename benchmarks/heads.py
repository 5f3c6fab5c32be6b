"""Which head: ursa's linear head fit against a fastai-style head, on the same frozen features.

    .venv/bin/python benchmarks/heads.py FOLDER [FOLDER ...] [--out heads.jsonl]
        [--epochs 20 100] [--lrs 2e-3 1e-2]

Each FOLDER has ``train/<class>/``, ``valid/<class>/`` and ``test/<class>/`` images (as
``benchmarks/small_data.py --workdir DIR`` makes them). For each, in one process:

1. ``ImageData.from_folder(folder, size=224, seed=0)`` and ``Learner(data)``: the model,
   preprocessing and precision exactly as ursa trains (bf16 autocast where the CPU has it).
2. Once: the frozen body's feature maps of the head fit's training passes (every image
   through the validation transform, and its mirror: ``Learner._feature_passes``), of
   ``valid/`` and of ``test/``, each pooled two ways in the same pass through
   ``head_fit.extract_features``: average (what ursa's linear head reads) and max.
3. On those cached features, each head is fitted and timed:

   * ``linear``: ursa's head fit (``fit_linear_head``: L2 chosen by cross-validation on the
     training features, then full-batch L-BFGS), called as ``Learner.fit_head`` calls it.
   * ``fastai``: fastai's ``create_head`` defaults in plain torch: concat pooling
     ([avg, max], 2 x 1280), BatchNorm1d, Dropout(0.25), Linear(2560 -> 512, no bias),
     ReLU, BatchNorm1d(512), Dropout(0.5), Linear(512 -> classes, no bias); Linear weights
     kaiming-normal as ``vision_learner`` initialises them. Trained as ``fit_one_cycle``
     trains: AdamW (betas 0.9/0.99, eps 1e-5, weight decay 0.01, none on batch norm), one
     cycle (``pct_start=0.25``, ``div=25``, ``div_final=1e5``, momentum 0.95-0.85-0.95),
     ursa's automatic batch size, shuffled, the last partial batch dropped; for each
     ``--epochs`` and ``--lrs``. An epoch is one pass over the training rows (2 views of
     every image).
   * ``fastai-avg``: the same head on the average-pooled features only (1280 in), to
     separate the pooling from the batch norm and hidden layer.

Every setting is reported; none is chosen on ``test/``. Training, validation and test error
and fit seconds (features excluded; the fits on one thread) are printed as a Markdown table
and appended to ``--out`` as JSON lines, each as it finishes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FEATURE_BATCH = 32  # the smallest inference batch, as in Learner._feature_passes


class AvgAndMax(nn.Module):
    """The model's body, pooled by its own head (average) and by max, side by side, so
    ``extract_features`` computes both from one pass: (B, 3, H, W) -> (B, 2 x D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images)  # (B, D, h, w)

    def forward_head(self, body: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        average = self.model.forward_head(body, pre_logits=True)  # (B, D)
        return torch.cat([average, body.amax(dim=(2, 3))], dim=1)  # (B, 2D)


def fastai_head(features: int, classes: int) -> nn.Sequential:
    """fastai's ``create_head`` after its pooling: BN, dropout, linear, twice."""
    head = nn.Sequential(
        nn.BatchNorm1d(features), nn.Dropout(0.25), nn.Linear(features, 512, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes, bias=False),
    )  # fmt: skip
    for layer in head:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight)
    return head


def train_fastai_head(
    values: torch.Tensor, labels: torch.Tensor, classes: int, *, epochs: int, lr: float,
    batch_size: int,
) -> nn.Sequential:  # fmt: skip
    """The head trained on (N, D) features as ``fit_one_cycle(epochs, lr)`` would."""
    torch.manual_seed(0)
    head = fastai_head(values.shape[1], classes)
    batch_norm = [p for m in head if isinstance(m, nn.BatchNorm1d) for p in m.parameters()]
    linear = [p for m in head if isinstance(m, nn.Linear) for p in m.parameters()]
    optimizer = torch.optim.AdamW(
        [{"params": linear, "weight_decay": 0.01}, {"params": batch_norm, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.99), eps=1e-5,
    )  # fmt: skip
    steps = max(1, len(values) // batch_size)  # drop_last, but at least one step
    # PyTorch's OneCycleLR ends at initial_lr / final_div_factor, fastai at lr / div_final.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=0.25,
        anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
        div_factor=25.0, final_div_factor=1e5 / 25.0,
    )  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(values))
        for step in range(steps):
            rows = order[step * batch_size : (step + 1) * batch_size]
            loss = loss_fn(head(values[rows]), labels[rows])  # (b, C) logits
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
    return head.eval()


def error(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) != labels).float().mean())


def features_of(folder: Path) -> tuple[dict, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(facts, {split: ((N, 2D) float32 [avg, max] features, (N,) labels)}) for one folder;
    the linear head's training features (with their image groups) under ``"head"``."""
    import ursa
    from ursa.core.items import Item
    from ursa.train import SilentLogger
    from ursa.train.head_fit import extract_features
    from ursa.train.loop import autocast_context

    data = ursa.ImageData.from_folder(folder, size=224, seed=0)
    learner = ursa.Learner(data, logger=SilentLogger())
    started = time.perf_counter()
    passes, valid_loader = learner._feature_passes(0)
    test_items = [Item(path.resolve(), path.parent.name)
                  for path in sorted((folder / "test").glob("*/*.png"))]  # fmt: skip
    test_loader = torch.utils.data.DataLoader(
        data.dataset(test_items, learner.preprocess, training=False),
        batch_size=max(data.batch_size, FEATURE_BATCH),
    )
    extract = functools.partial(
        extract_features, AvgAndMax(learner.model), device=learner.device,
        channels_last=learner.options.channels_last,
        autocast=functools.partial(autocast_context, learner.device, learner.options),
    )  # fmt: skip
    train = extract(passes)
    splits = {"train": train, "valid": extract([(valid_loader, None)]),
              "test": extract([(test_loader, None)])}  # fmt: skip
    facts = {
        "folder": folder.name, "classes": len(data.class_names),
        "k": len(data.train_items) // len(data.class_names), "train_rows": len(train.labels),
        "batch_size": data.batch_size, "precision": learner.options.precision,
        "feature_seconds": time.perf_counter() - started, "head": train,
        "loss_fn": learner.loss_fn, "seed": learner.seed,
    }  # fmt: skip
    tensors = {name: (torch.from_numpy(f.values).float(), torch.from_numpy(f.labels))
               for name, f in splits.items()}  # fmt: skip
    return facts, tensors


def run_folder(folder: Path, epochs: list[int], lrs: list[float], out: Path) -> list[dict]:
    """Every head on one folder's features; each row printed and appended to ``out`` as it
    finishes."""
    from ursa.train.head_fit import Features, fit_linear_head

    facts, splits = features_of(folder)
    train = facts.pop("head")
    loss_fn, seed = facts.pop("loss_fn"), facts.pop("seed")
    classes, width = facts["classes"], train.values.shape[1] // 2
    print(f"{folder.name}: {facts['train_rows']} training rows, batch {facts['batch_size']}, "
          f"{facts['precision']}, features {facts['feature_seconds']:.0f} s",
          flush=True)  # fmt: skip
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        with out.open("a") as stream:
            stream.write(json.dumps(row) + "\n")
        print(table([row]).splitlines()[-1], flush=True)

    # The heads' many small operations run on one thread: on a shared 2-core machine a
    # second thread waits for a core at every operation (a first run with two threads
    # was still in its first folder's head fits after 9 minutes).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    average = Features(np.ascontiguousarray(train.values[:, :width]), train.labels, train.groups)
    started = time.perf_counter()
    fitted = fit_linear_head(average, classes, loss_fn=loss_fn, weight_decay=None, seed=seed)
    seconds = time.perf_counter() - started
    scores = {f"{name}_error": error(x[:, :width] @ fitted.weight.T + fitted.bias, y)
              for name, (x, y) in splits.items()}  # fmt: skip
    record({**facts, "head": "linear", "epochs": None, "lr": None, "seconds": seconds,
            "weight_decay": fitted.weight_decay, **scores})  # fmt: skip
    x_train, y_train = splits["train"]
    for head, columns in (("fastai", slice(None)), ("fastai-avg", slice(0, width))):
        for epoch_count in epochs:
            for lr in lrs:
                started = time.perf_counter()
                model = train_fastai_head(
                    x_train[:, columns], y_train, classes, epochs=epoch_count, lr=lr,
                    batch_size=facts["batch_size"],
                )  # fmt: skip
                seconds = time.perf_counter() - started
                with torch.no_grad():
                    scores = {f"{name}_error": error(model(x[:, columns]), y)
                              for name, (x, y) in splits.items()}  # fmt: skip
                record({**facts, "head": head, "epochs": epoch_count, "lr": lr,
                        "seconds": seconds, **scores})  # fmt: skip
    torch.set_num_threads(threads)
    return rows


def table(rows: list[dict]) -> str:
    header = ("folder", "k", "head", "epochs", "lr", "train error", "valid error",
              "test error", "fit s")  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: | --- | ---: | ---: |" + " ---: |" * 4]
    for r in rows:
        setting = ("–", "–") if r["epochs"] is None else (str(r["epochs"]), f"{r['lr']:g}")
        errors = " | ".join(f"{100 * r[f'{s}_error']:.1f} %" for s in ("train", "valid", "test"))
        lines.append(
            f"| {r['folder']} | {r['k']} | {r['head']} | {setting[0]} | {setting[1]} | "
            f"{errors} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("heads.jsonl"))
    parser.add_argument("--epochs", nargs="+", type=int, default=[20, 100])
    parser.add_argument("--lrs", nargs="+", type=float, default=[2e-3, 1e-2])
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores, {platform.machine()}, Python "
          f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
          flush=True)  # fmt: skip
    rows = []
    for folder in arguments.folders:
        rows += run_folder(folder, arguments.epochs, arguments.lrs, arguments.out)
    print(table(rows))
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
