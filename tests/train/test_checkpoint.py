"""Checkpoints: interrupt after an epoch, resume, and end with the very same weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import EpochRecord, Learner, SilentLogger, TrainingInterrupted
from ursa.train.checkpoint import CheckpointError, load_checkpoint


class InterruptAt(SilentLogger):
    """Raises KeyboardInterrupt (as Ctrl-C would) when epoch ``epoch`` starts its first batch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.current = -1

    def start_epoch(self, epoch: int, steps: int, phase: str) -> None:
        self.current = epoch

    def step(self, step: int, loss: float) -> None:
        if self.current == self.epoch:
            raise KeyboardInterrupt


def _learner(folder: Path, workers: int = 0, **kwargs: object) -> Learner:
    data = ImageData.from_folder(folder, size=32, batch_size=8, num_workers=workers, seed=0)
    kwargs.setdefault("logger", SilentLogger())
    return Learner(data, arch=TINY_ARCH, pretrained=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("data") / "colours", per_class=10)


@pytest.fixture(scope="module")
def uninterrupted(folder: Path) -> Learner:
    learner = _learner(folder)
    learner.fine_tune(2, base_lr=1e-2)
    return learner


@pytest.mark.parametrize("interrupt_epoch", [1, 2])  # between the fits, and inside the second
def test_resume_after_interruption_reaches_the_uninterrupted_weights(
    folder: Path, uninterrupted: Learner, tmp_path: Path, interrupt_epoch: int
) -> None:
    runs = tmp_path / "runs"
    interrupted = _learner(folder, checkpoint_dir=runs, logger=InterruptAt(interrupt_epoch))
    with pytest.raises(TrainingInterrupted, match="--resume"):
        interrupted.fine_tune(2, base_lr=1e-2)
    saved = load_checkpoint(runs)
    assert len(saved.state["history"]) == interrupt_epoch  # the finished epochs only

    resumed = _learner(folder, checkpoint_dir=runs)
    resumed.resume(runs)
    resumed.fine_tune(2, base_lr=1e-2)

    expected = uninterrupted.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    # the head fit, two epochs and the validated average of the head fit and the last one
    assert [r.epoch for r in resumed.history] == [0, 1, 2, 3]
    assert [r.phase for r in resumed.history] == ["head", "unfrozen", "unfrozen", "average"]
    assert [r.valid_loss for r in resumed.history] == [r.valid_loss for r in uninterrupted.history]
    assert resumed.kept == uninterrupted.kept


def test_checkpoint_holds_tensors_and_json_and_no_pickled_code(
    folder: Path, tmp_path: Path
) -> None:
    learner = _learner(folder, checkpoint_dir=tmp_path / "runs", keep_best=True)
    learner.fit_one_cycle(1, 1e-2)
    path = tmp_path / "runs" / "last.ckpt"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert names == {
        "state.json", "model.safetensors", "rng.safetensors", "optimizer.pt", "best.safetensors"
    }  # fmt: skip
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed
    checkpoint = load_checkpoint(path)
    assert checkpoint.state["epochs_done"] == 1
    assert isinstance(EpochRecord(**checkpoint.state["history"][0]), EpochRecord)


def test_resume_refuses_another_model_or_a_different_plan(folder: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _learner(folder, checkpoint_dir=runs).fit_one_cycle(1, 1e-2)
    learner = _learner(folder)
    learner.resume(runs / "last")  # `runs/last` works as the issue spells it
    with pytest.raises(CheckpointError, match="same command"):
        learner.fit_one_cycle(2, 1e-2)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        learner.resume(tmp_path / "nowhere")
    (tmp_path / "bad.ckpt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        learner.resume(tmp_path / "bad.ckpt")


def test_resume_is_exact_with_loader_workers_too(
    folder: Path, uninterrupted: Learner, tmp_path: Path
) -> None:
    # Each epoch's workers are seeded from the loader's generator, which the
    # checkpoint holds, so a worker process draws the same augmentation after a resume.
    runs = tmp_path / "runs"
    interrupted = _learner(folder, workers=1, checkpoint_dir=runs, logger=InterruptAt(2))
    with pytest.raises(TrainingInterrupted):
        interrupted.fine_tune(2, base_lr=1e-2)
    resumed = _learner(folder, workers=1, checkpoint_dir=runs)
    resumed.resume(runs)
    resumed.fine_tune(2, base_lr=1e-2)
    straight = _learner(folder, workers=1)
    straight.fine_tune(2, base_lr=1e-2)
    expected = straight.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_resuming_a_finished_run_ends_with_the_weights_it_kept(
    folder: Path, uninterrupted: Learner, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    finished = _learner(folder, checkpoint_dir=runs)
    finished.fine_tune(2, base_lr=1e-2)  # the checkpoint is written as the last epoch ends
    resumed = _learner(folder, checkpoint_dir=runs)
    resumed.resume(runs)
    # nothing left to train: only the average with the head fit is validated again
    assert [r.phase for r in resumed.fine_tune(2, base_lr=1e-2)] == ["average"]
    expected = uninterrupted.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name  # keep-best's choice, not the last


def test_resume_refuses_to_end_another_way_than_the_interrupted_run(
    folder: Path, tmp_path: Path
) -> None:
    # The averaged fit and a --no-keep-best one both run without keep-best; the recorded
    # settings still tell them apart, so the resumed run cannot end differently.
    runs = tmp_path / "runs"
    interrupted = _learner(folder, checkpoint_dir=runs, logger=InterruptAt(2))
    with pytest.raises(TrainingInterrupted):
        interrupted.fine_tune(2, base_lr=1e-2)
    for changed in ({"average": False}, {"keep_best": False}):
        resumed = _learner(folder, checkpoint_dir=runs)
        resumed.resume(runs)
        with pytest.raises(CheckpointError, match="same command"):
            resumed.fine_tune(2, base_lr=1e-2, **changed)  # type: ignore[arg-type]
