"""Run by ``accelerate launch`` in test_distributed.py: fine-tune the tiny model on a folder,
export once, and record how many training batches this process ran."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger


def main(folder: str, out: str) -> None:
    data = ImageData.from_folder(folder, size=32, batch_size=4, num_workers=0, seed=0)
    learner = Learner(data, arch="test_efficientnet", pretrained=False, logger=SilentLogger())
    assert learner.accelerator is not None, "expected to run under accelerate launch"
    batches = [0]

    def count(module: torch.nn.Module, inputs: object) -> None:
        if module.training:
            batches[0] += 1

    learner.model.register_forward_pre_hook(count)
    learner.fine_tune(1, base_lr=1e-2)
    learner.export(Path(out) / "model.ursa")
    rank = int(os.environ["RANK"])
    report = {"train_batches": batches[0], "history": [r.to_dict() for r in learner.history]}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
