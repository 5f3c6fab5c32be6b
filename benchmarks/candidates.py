"""Which weights to end fine-tuning with: the head fit, the last epoch, or their average.

    .venv/bin/python benchmarks/candidates.py DIR [DIR ...] [--min-scale 0.75] [--out F]

Each DIR is a folder made by ``benchmarks/small_data.py`` (``train/``, ``valid/`` and
``test/`` class folders). For each, in one process: ``ImageData.from_folder(DIR, size=224,
seed=SEED, min_scale=...)`` (SEED from the folder's ``-sN`` suffix), the head fit, then
the unfrozen one-cycle fit as ``fine_tune`` runs it with every default on a set of 500
training images or more (rates 1e-5 to 1e-3, ``pct_start=0.3``, ``div=5``, the
automatic epochs, no early stop; smaller sets are fine-tuned here too, though
``fine_tune()`` leaves them to the head fit), and the validation and test error of three
candidates: the head fit, the last epoch, and the average of the two sets of weights.
``fine_tune`` keeps the best validated of the three (scored in the training precision,
bf16 on this CPU, so its choice can differ from this fp32 "valid" column where two are
an image apart); this shows what each scores on the test set, which ``fine_tune`` never
sees. Also each unfrozen epoch's training loss and validation error as the loop saw them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def held_out(folder: Path, split: str, learner: Any) -> tuple[torch.Tensor, np.ndarray]:
    """``split``'s images as validation shows them, and their class indices."""
    from ursa.core.preprocess import prepare_input

    files = sorted((folder / split).rglob("*.png"))
    inputs = np.stack([prepare_input(f, learner.preprocess) for f in files])
    labels = np.array([learner.class_names.index(f.parent.name) for f in files])
    return torch.from_numpy(inputs), labels


@torch.inference_mode()
def errors(learner: Any, sets: dict[str, tuple[torch.Tensor, np.ndarray]]) -> dict[str, float]:
    """The model's fp32 error rate on each held-out set."""
    model = learner.model.eval()
    found = {}
    for split, (inputs, labels) in sets.items():
        logits = torch.cat([
            model(inputs[i : i + 100].contiguous(memory_format=torch.channels_last))
            for i in range(0, len(inputs), 100)
        ])  # fmt: skip
        found[split] = float((logits.argmax(1).numpy() != labels).mean())
    return found


def candidates(folder: Path, min_scale: float | None) -> dict[str, Any]:
    """Head fit, unfrozen fit, and the three candidates' errors for one folder."""
    import ursa
    from ursa.train import SilentLogger
    from ursa.train.learner import auto_epochs, average_weights

    found = re.search(r"-s(\d+)$", folder.name)
    seed = int(found.group(1)) if found else 0
    started = time.perf_counter()
    extra = {} if min_scale is None else {"min_scale": min_scale}
    data = ursa.ImageData.from_folder(folder, size=224, seed=seed, **extra)
    learner = ursa.Learner(data, logger=SilentLogger())
    sets = {split: held_out(folder, split, learner) for split in ("valid", "test")}
    learner.freeze()
    learner.fit_head()
    head = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
    result: dict[str, Any] = {
        "folder": folder.name, "train_images": len(data.train_items),
        "min_scale": data.config.min_scale, "head": errors(learner, sets),
    }  # fmt: skip
    epochs = auto_epochs(len(data.train_items), data.batch_size)
    learner.unfreeze()
    learner.fit_one_cycle(
        epochs, (1e-5, 1e-3), pct_start=0.3, div=5.0, phase="unfrozen", keep_best=False
    )
    result["epoch_rows"] = [
        (round(r.train_loss, 3), round(r.error_rate, 3)) for r in learner.history[-epochs:]
    ]
    last = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
    result["last"] = errors(learner, sets)
    learner.model.load_state_dict(average_weights(head, last))
    result["average"] = errors(learner, sets)
    result["epochs"] = epochs
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--min-scale", type=float, default=None, help="default: ursa's")
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    arguments = parser.parse_args()
    rows = []
    for folder in arguments.folders:
        result = candidates(folder, arguments.min_scale)
        print(json.dumps(result), flush=True)
        rows.append(result)
        if arguments.out is not None:
            with arguments.out.open("a") as stream:
                stream.write(json.dumps(result) + "\n")
    print(
        "| folder | epochs | head valid / test | last epoch valid / test | average valid / test |"
    )
    print("| --- | ---: | --- | --- | --- |")
    for row in rows:
        cells = [f"{100 * row[c]['valid']:.1f} / {100 * row[c]['test']:.1f} %"
                 for c in ("head", "last", "average")]  # fmt: skip
        print(f"| {row['folder']} | {row['epochs']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
