"""Two CPU processes through `accelerate launch` (gloo on loopback) on a tiny dataset.

Accelerate 1.x starts several CPU processes only through torch's launcher behind
``--multi_gpu`` (``--cpu --num_processes 2`` runs one process unless mpirun is
used); with no GPU visible each process then picks the CPU and gloo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_processes_split_the_batches_gather_metrics_once_and_export_once(
    tmp_path: Path,
) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate is not installed (pip install 'ursa[train]')")
    # 11 validation images: not a multiple of 2 processes x 4, so the last batch is padded
    folder = make_class_folder(tmp_path / "colours", per_class=18)
    out = tmp_path / "out"
    out.mkdir()
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        str(ROOT / "tests" / "train" / "distributed_job.py"), str(folder), str(out),
    ]  # fmt: skip
    environment = {
        **os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

    data = ImageData.from_folder(folder, size=32, batch_size=4, num_workers=0, seed=0)
    assert len(data.valid_items) % 8 != 0
    single_batches = len(data.train_items) // 4  # 1 unfrozen epoch (the head is fitted)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["train_batches"] for r in reports] == [single_batches // 2] * 2
    # The head fit's features: each process computes its half of the two passes (plain and
    # mirrored, padded by at most a batch each), and both end with every row.
    rows = 2 * len(data.train_items)
    assert [r["head_rows"] for r in reports] == [rows, rows]
    for report in reports:
        assert rows // 2 <= report["feature_images"] <= rows // 2 + 2 * 32

    assert sorted(p.name for p in out.iterdir()) == ["model.ursa", "rank0.json", "rank1.json"]
    with zipfile.ZipFile(out / "model.ursa") as bundle:
        weights = load(bundle.read("model.safetensors"))
        metrics = json.loads(bundle.read("metrics.json"))
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.model.load_state_dict(weights)
    single = learner.validate()
    assert metrics["final"]["count"] == single.count == len(data.valid_items)  # none twice
    assert metrics["final"]["accuracy"] == pytest.approx(single.accuracy, abs=1e-9)
    assert reports[0]["history"][-1]["accuracy"] == pytest.approx(single.accuracy, abs=1e-9)
    assert torch.isfinite(torch.tensor(metrics["final"]["valid_loss"]))
