"""Early stopping, keep-best, accumulation, clipping, class balance, TTA, options checks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.core.errors import ConfigError
from ursa.data.core import ImageData
from ursa.train import FitOptions, Learner, SilentLogger
from ursa.train import learner as learner_module
from ursa.train.learner import auto_precision
from ursa.train.loop import _autocast_dtype, cpu_has_bf16


def _learner(folder: Path, batch_size: int = 8, **kwargs: object) -> Learner:
    data = ImageData.from_folder(folder, size=32, batch_size=batch_size, num_workers=0, seed=0)
    return Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("d") / "colours", per_class=10)


def test_early_stopping_stops_when_the_metric_stalls(folder: Path) -> None:
    # frozen body in eval mode and a vanishing rate: accuracy cannot move after epoch 0
    learner = _learner(folder, train_bn=False, monitor="accuracy", patience=2)
    learner.freeze()
    records = learner.fit_one_cycle(6, 1e-12)
    assert len(records) == 3  # the first epoch sets the best, two more without improvement


def test_keep_best_ends_with_the_best_epochs_weights(folder: Path) -> None:
    # fp32: the epochs are validated in the training precision, validate() in fp32
    learner = _learner(folder, monitor="valid_loss", keep_best=True, precision="fp32")
    records = learner.fit_one_cycle(3, 5e-2)
    best = min(r.valid_loss for r in records)
    assert learner.validate().loss == pytest.approx(best, rel=1e-6)


def test_accumulation_steps_every_n_batches_and_clipping_bounds_the_norm(folder: Path) -> None:
    learner = _learner(folder, accumulate=2, clip_norm=1e-3)
    norms: list[float] = []
    real_step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy  # type: ignore[method-assign]
    try:
        learner.fit_one_cycle(1, 1e-2)
    finally:
        torch.optim.AdamW.step = real_step  # type: ignore[method-assign]
    batches = len(learner._dataloaders()[0])
    assert len(norms) == math.ceil(batches / 2)
    assert max(norms) <= 1e-3 * (1 + 1e-4)


def test_class_weights_and_the_balanced_sampler_even_out_classes(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=4)
    make_class_folder(tmp_path / "big", per_class=24)
    for image in (tmp_path / "big" / "red").iterdir():  # red: six times the others
        image.rename(folder / "red" / f"big-{image.name}")
    weighted = _learner(folder, class_weights=True, label_smoothing=0.1)
    weights = weighted.loss_fn.weight
    assert weights is not None and weights[2] < weights[0] == pytest.approx(weights[1])
    assert weighted.loss_fn.label_smoothing == 0.1
    balanced = _learner(folder, balanced_sampler=True)
    train_loader, _ = balanced._dataloaders()
    labels = torch.cat([labels for _, labels in train_loader for _ in range(1)])
    counts = np.bincount(labels.numpy(), minlength=3)
    assert counts[2] < 0.6 * len(labels)  # red is ~75 % of the images, far less of the draws


def test_tta_averages_views_and_predict_accepts_it(folder: Path) -> None:
    learner = _learner(folder)
    plain, tta = learner.validate(), learner.validate(tta=True)
    assert plain.count == tta.count == len(learner.data.valid_items)
    assert plain.loss != tta.loss  # the extra views change the probabilities
    prediction = learner.predict(folder / "red" / "00.png", tta=True)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_options_are_checked_together() -> None:
    with pytest.raises(ConfigError) as error:
        FitOptions(accumulate=0, clip_norm=-1, monitor="f2", patience=0)
    message = str(error.value)
    for field in ("accumulate=0", "clip_norm=-1", "monitor='f2'", "patience=0"):
        assert field in message


def test_fp16_on_a_cpu_runs_in_fp32_and_auto_takes_bf16_where_the_cpu_has_it(
    folder: Path,
) -> None:
    learner = _learner(folder, precision="fp16", device="cpu")
    records = learner.fit_one_cycle(1, 1e-2)
    assert learner.options.precision == "fp16" and math.isfinite(records[0].train_loss)
    assert _autocast_dtype(torch.device("cpu"), learner.options) is None  # fp16: CUDA only
    auto = _learner(folder, device="cpu").options  # 8 images of 32 px a batch: fp32 steps
    assert auto.precision == "fp32"
    assert auto.eval_precision == ("bf16" if cpu_has_bf16() else None)


def test_auto_precision_trains_in_bf16_only_from_large_batches_on_a_bf16_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(learner_module, "cpu_has_bf16", lambda: True)
    assert auto_precision(cpu, 32, 96) == ("fp32", "bf16")  # the demo's batches
    assert auto_precision(cpu, 64, 96) == ("bf16", None)  # 589,824 pixels and more
    assert auto_precision(cpu, 32, 128) == ("fp32", "bf16")  # 524,288: slower in bf16
    assert auto_precision(cpu, 32, 192) == ("bf16", None)
    assert auto_precision(cpu, 3, 224) == ("fp32", "bf16")
    monkeypatch.setattr(learner_module, "cpu_has_bf16", lambda: False)
    assert auto_precision(cpu, 64, 224) == ("fp32", None)


def test_training_steps_and_passes_without_gradients_each_run_in_their_precision(
    folder: Path,
) -> None:
    learner = _learner(folder, precision="fp32", device="cpu")
    learner.options = replace(learner.options, eval_precision="bf16")
    seen: set[tuple[bool, bool]] = set()  # (gradients on, bf16 autocast on) per forward

    def record(module: object, inputs: object, output: object) -> None:
        autocast = torch.is_autocast_enabled("cpu")
        bf16 = autocast and torch.get_autocast_dtype("cpu") == torch.bfloat16
        seen.add((torch.is_grad_enabled(), bf16))

    learner.model.register_forward_hook(record)
    learner.fine_tune(1, base_lr=1e-2)  # the head fit's features, a training epoch, validation
    assert seen == {(True, False), (False, True)}
    assert "fp32 training steps, bf16 inference" in repr(learner)


def test_passes_without_gradients_take_the_eval_precision() -> None:
    cpu = torch.device("cpu")
    split = FitOptions(precision="fp32", eval_precision="bf16")
    assert _autocast_dtype(cpu, split) is None
    assert _autocast_dtype(cpu, split, training=False) == torch.bfloat16
    same = FitOptions(precision="bf16")
    assert _autocast_dtype(cpu, same, training=False) == torch.bfloat16
    with pytest.raises(ConfigError, match="eval_precision='fp8'"):
        FitOptions(eval_precision="fp8")  # type: ignore[arg-type]


def test_bf16_on_a_cpu_trains_under_autocast(folder: Path) -> None:
    learner = _learner(folder, precision="bf16", device="cpu")
    assert _autocast_dtype(torch.device("cpu"), learner.options) == torch.bfloat16
    records = learner.fine_tune(1, base_lr=1e-2)
    assert all(math.isfinite(r.train_loss) for r in records if r.phase != "average")
    assert all(math.isfinite(r.valid_loss) for r in records)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_epochs_of_mixed_precision_on_cuda(folder: Path) -> None:
    learner = _learner(folder, device="cuda")
    assert learner.options.precision in ("bf16", "fp16")
    learner.fine_tune(1, base_lr=1e-2)
    assert all(math.isfinite(r.train_loss) for r in learner.history)
