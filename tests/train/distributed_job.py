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
    # Images this process runs through the body for the head fit (its shard only).
    feature_images, fitting = [0], [False]

    def count_features(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if fitting[0]:
            feature_images[0] += len(inputs[0])

    learner.model.conv_stem.register_forward_pre_hook(count_features)
    fit_weights = learner._fit_head_weights

    def counted(*args: object, **kwargs: object) -> object:
        fitting[0] = True
        try:
            return fit_weights(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            fitting[0] = False

    learner._fit_head_weights = counted  # type: ignore[method-assign]
    learner.fine_tune(1, base_lr=1e-2)
    learner.export(Path(out) / "model.ursa")
    rank = int(os.environ["RANK"])
    report = {
        "train_batches": batches[0],
        "feature_images": feature_images[0],
        "head_rows": learner.head.rows if learner.head is not None else 0,
        "history": [r.to_dict() for r in learner.history],
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
