"""The Learner: a backbone with a new head, fitted with fastai's recipe, exported as a bundle."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ursa.core.errors import ConfigError, DataError, UrsaError
from ursa.core.imageio import ImageSource
from ursa.core.notebook import quiet_tqdm_widget_warning
from ursa.core.prediction import Prediction, predictions_from_logits
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.data.core import ImageData, html_table
from ursa.models.backbones import backbone_info, classifier_of, create_model, layer_groups
from ursa.train import checkpoint as ckpt
from ursa.train.advice import training_warnings
from ursa.train.config import TrainConfig, differences
from ursa.train.distributed import make_accelerator, world_size
from ursa.train.head_fit import HeadFit, Pass, extract_features, fit_linear_head, mirror
from ursa.train.loop import (
    BestTracker,
    FitOptions,
    Precision,
    autocast_context,
    cpu_has_bf16,
    evaluate,
    fit,
    predict_logits,
    unwrap,
)
from ursa.train.lr_find import LRFindResult, lr_sweep
from ursa.train.metrics import Metrics, classification_metrics, improved
from ursa.train.progress import (
    EpochRecord,
    EpochTable,
    SilentLogger,
    TrainingLogger,
    default_logger,
)

if TYPE_CHECKING:
    from accelerate import Accelerator
    from matplotlib.figure import Figure

    from ursa.interpret.interpretation import Interpretation

log = logging.getLogger(__name__)

LearningRate = float | tuple[float, float]
"""One rate for every layer group, or (first layers, head) spread geometrically between."""


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TrainingInterrupted(UrsaError):
    """Training stopped by Ctrl-C; the message says how to resume."""


BF16_MIN_BATCH_PIXELS = 64 * 96 * 96
"""On a CPU with bf16 instructions, ``precision="auto"`` trains in bf16 from this many
input pixels a batch (batch size x side²: 64 images at 96 px, 589,824) and in fp32 below;
passes without gradients run in bf16 at any size. Measured with ``benchmarks/precision.py``
(EfficientNet-Lite0, 2 cores with AVX-512 BF16, batch norm as ursa fine-tunes): 64 images
at 96 px is the smallest batch measured where a bf16 training step was faster (0.94x);
32 at 128 px (524,288 pixels) took 1.17x as long, 32 at 96 px 1.20x, 32 at 192-224 px
0.78-0.85x; inference was 0.39-0.65x at every size (docs/benchmarks.md)."""


def auto_precision(
    device: torch.device, batch_size: int, side: int
) -> tuple[Precision, Precision | None]:
    """What ``precision="auto"`` means for a run in batches of ``batch_size`` at ``side``
    px: (training precision, precision of the passes without gradients, None: the same).
    bf16 on a CUDA GPU that has it, fp16 on older GPUs; on a CPU with bf16 instructions
    (AVX-512 BF16, AMX) bf16 for inference, and for training from
    :data:`BF16_MIN_BATCH_PIXELS` a batch; else fp32."""
    if device.type == "cpu":
        if not cpu_has_bf16():
            return "fp32", None
        if batch_size * side * side >= BF16_MIN_BATCH_PIXELS:
            return "bf16", None
        return "fp32", "bf16"
    if device.type != "cuda":
        return "fp32", None
    return ("bf16" if torch.cuda.is_bf16_supported() else "fp16"), None


class Learner:
    """Fine-tunes a pretrained backbone on an :class:`~ursa.data.ImageData`.

    >>> learner = Learner(data, arch="efficientnet_lite0")
    >>> learner.fine_tune(3)
    >>> learner.export("bears.ursa")
    """

    def __init__(
        self,
        data: ImageData,
        arch: str | None = None,
        *,
        config: TrainConfig | None = None,
        device: str | torch.device | None = None,
        logger: TrainingLogger | None = None,
        checkpoint_dir: str | Path | None = None,
        distributed: bool | None = None,
        class_weights: bool = False,
        balanced_sampler: bool = False,
        **settings: Any,
    ) -> None:
        """``config``: the run's :class:`~ursa.train.config.TrainConfig` (default: every
        default); ``arch`` and ``settings`` change it by name, e.g.
        ``Learner(data, "efficientnet_lite1", label_smoothing=0.1, precision="fp32")``; an
        unknown name is a :class:`ConfigError` listing the known ones. The settings:
        ``pretrained``, ``weights``, ``drop_rate``, ``train_bn``, ``channels_last``
        (model); ``label_smoothing``, ``balance`` (``"weights"``: the loss weighed by
        inverse class frequency; ``"sampler"``: each class equally likely to be drawn);
        ``weight_decay``, ``accumulate``, ``clip_norm`` (optimiser); ``precision``
        (``"auto"``: bf16 or fp16 on CUDA; on a CPU with bf16 instructions bf16
        inference, and bf16 training steps from :data:`BF16_MIN_BATCH_PIXELS` a batch;
        else fp32: see :func:`auto_precision`), ``monitor``, ``patience``,
        ``min_delta``, ``keep_best``, ``keep_bn_stats`` (see
        :class:`~ursa.train.loop.FitOptions`); ``seed`` (default: the data's).
        ``class_weights=True`` / ``balanced_sampler=True`` are the older spellings of
        ``balance``.

        Not part of the config (they change how a run goes, not what it computes):
        ``device``, ``logger``, ``checkpoint_dir`` (write ``last.ckpt`` there after every
        epoch; resume with :meth:`resume`), ``distributed`` (use Accelerate's process
        group; None: when launched with several processes, ``accelerate launch``)."""
        quiet_tqdm_widget_warning()  # before timm's import, which warns in some notebooks
        if class_weights and balanced_sampler:
            raise ConfigError("class_weights and balanced_sampler: choose one balance")
        if class_weights or balanced_sampler:
            settings.setdefault("balance", "weights" if class_weights else "sampler")
        if arch is not None:
            settings["arch"] = arch
        if isinstance(settings.get("weights"), Path):
            settings["weights"] = str(settings["weights"])
        config = (config or TrainConfig()).replace(**settings)
        if config.run.seed is None:
            config = config.replace(seed=data.config.seed)
        self.config = config
        """The run's settings, whole (recorded in checkpoints and the bundle)."""
        model, fit = config.model, config.fit
        arch, pretrained, weights = model.arch, model.pretrained, model.weights
        channels_last = model.channels_last
        self.data = data
        self.arch = arch
        self.seed = int(config.run.seed)  # type: ignore[arg-type]  # set above
        self.weight_decay = config.optimizer.weight_decay
        self.train_bn = model.train_bn
        self.accelerator: Accelerator | None = None
        if distributed or (distributed is None and world_size() > 1):
            cpu = device is not None and torch.device(device).type == "cpu"
            self.accelerator = make_accelerator(cpu=cpu or not torch.cuda.is_available())
            self.device = self.accelerator.device
        else:
            self.device = torch.device(device) if device is not None else default_device()
        self.is_main = self.accelerator is None or self.accelerator.is_main_process
        # Only the main process reports; the others train silently. Unless told otherwise, a
        # notebook gets a bar that updates in place, a script the plain-text table.
        self.logger: TrainingLogger = (
            (logger or default_logger()) if self.is_main else SilentLogger()
        )
        precision, eval_precision = (
            auto_precision(self.device, data.batch_size, data.config.size)
            if fit.precision == "auto"
            else (fit.precision, None)
        )
        self.options = FitOptions(
            accumulate=config.optimizer.accumulate,
            clip_norm=config.optimizer.clip_norm,
            precision=precision,
            eval_precision=eval_precision,
            channels_last=channels_last,
            monitor=fit.monitor,
            patience=fit.patience,
            min_delta=fit.min_delta,
            keep_best=fit.keep_best,
            # Random weights have no statistics worth keeping.
            keep_bn_stats=(pretrained or weights is not None)
            if fit.keep_bn_stats is None
            else fit.keep_bn_stats,
        )
        self.balanced_sampler = config.loss.balance == "sampler"
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        info = backbone_info(arch)
        self.timm_name = info.timm_name
        self.preprocess = PreprocessConfig(
            size=data.config.size,
            resize=data.config.resize,
            pad_mode=data.config.pad_mode,
            interpolation=info.interpolation,  # type: ignore[arg-type]
            mean=info.mean,
            std=info.std,
            input=data.config.input,
        )
        # On CUDA the preset's augmentation runs on whole batches on the GPU; None: the
        # loader augments each image (see ImageData.batch_augmenter).
        self.batch_augment = data.batch_augmenter(self.preprocess, self.device)
        torch.manual_seed(self.seed)  # the new head's initial weights follow the seed
        self.model = create_model(
            arch,
            len(data.class_names),
            pretrained=pretrained,
            weights=weights,
            drop_rate=model.drop_rate,
        ).to(self.device)
        if channels_last:
            # NHWC: the CPU's (oneDNN) and the GPU's (cuDNN) fast convolution kernels;
            # measured 25 % faster training steps for EfficientNet-Lite0 on this CPU.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.pretrained = pretrained or weights is not None
        weight = self._class_weights() if config.loss.balance == "weights" else None
        self.loss_fn = nn.CrossEntropyLoss(
            weight=weight, label_smoothing=config.loss.label_smoothing
        )
        self.loss_fn.to(self.device)
        self.history: list[EpochRecord] = []
        self.warnings: list[str] = []
        """What the last fine_tune found worth a warning (near chance, few validation images)."""
        self._head_metrics: Metrics | None = None
        self._resumed_baseline: BestTracker | None = None
        self._kept_record: EpochRecord | None = None
        """The record of the weights the last fine_tune ended with (see :attr:`kept`)."""
        self._averaging_fit = False
        """Set by fine_tune for the fit it averages with the head fit (recorded in its
        settings, so that resuming with --no-average or --no-keep-best is refused)."""
        self._fit_tracker: BestTracker | None = None
        """The last fit_one_cycle's best-metric tracker (restored when resumed)."""
        self.final_metrics: Metrics | None = None
        """The validation metrics :meth:`export` measured on the final weights."""
        self.head: HeadFit | None = None
        """The last :meth:`fit_head` result (weight decay chosen, rows, time)."""
        self.fits: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.frozen = False
        self._loaders: tuple[Any, Any] | None = None
        self._prepared: tuple[Any, Any] | None = None
        self._fit_index = 0
        self._resume: ckpt.Checkpoint | None = None

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    # -- what a notebook shows --------------------------------------------------------------

    @property
    def kept(self) -> str | None:
        """Which weights the last fine_tune ended with: "the head fit", "epoch N" or "the
        average of the head fit and epoch N" (recorded in the bundle); None before
        fine_tune or once the weights have trained on."""
        kept = self._kept_record
        if kept is None:
            return None
        if kept.phase == "head":
            return "the head fit"
        if kept.phase == "average":
            return f"the average of the head fit and epoch {kept.epoch - 1}"
        return f"epoch {kept.epoch}"

    def _facts(self) -> list[tuple[str, str]]:
        """(name, value) lines of the repr: model, data, device, what was trained."""
        names = ", ".join(self.class_names[:8]) + (", …" if len(self.class_names) > 8 else "")
        arch = self.arch if self.timm_name == self.arch else f"{self.arch} (timm {self.timm_name})"
        data = self.data
        facts = [
            ("model", f"{arch}, {'pretrained' if self.pretrained else 'random weights'}"),
            ("classes", f"{len(self.class_names)}: {names}"),
            ("data", f"{len(data.train_items)} training and {len(data.valid_items)} validation "
                     f"images, {data.config.size} px, batch {data.batch_size}"),
            ("device", f"{self.device}, {self._precision_words()}"),
        ]  # fmt: skip
        if self.history:
            shown, which = self.history[-1], "last"
            if self._kept_record is not None:
                shown, which = self._kept_record, f"kept {self.kept}"
            epochs = sum(1 for r in self.history if r.phase != "average")  # a validation only
            phases = ", ".join(dict.fromkeys(r.phase for r in self.history))
            facts.append((
                "trained",
                f"{epochs} epoch(s) ({phases}) in {self.train_seconds:.0f} s; {which}: "
                f"error_rate {shown.error_rate:.4f}, valid_loss {shown.valid_loss:.4f}",
            ))  # fmt: skip
        else:
            facts.append(("trained", "not yet: learner.fine_tune()"))
        return facts

    def __repr__(self) -> str:
        """A few lines: the model, the data, the device and what was trained so far."""
        facts = self._facts()
        width = max(len(name) for name, _ in facts)
        lines = [f"  {name.ljust(width)}  {value}" for name, value in facts]
        return "\n".join(["Learner", *lines])

    def _repr_html_(self) -> str:
        """The repr as HTML for a notebook, with the epoch table of everything trained."""
        history = EpochTable(self.history)
        return (
            "<div><strong>Learner</strong>"
            + html_table(None, self._facts(), row_headers=True)
            + (history._repr_html_() if history else "")
            + "</div>"
        )

    def _class_weights(self) -> torch.Tensor:
        """Inverse class frequency, scaled so a balanced dataset gets weight 1 everywhere."""
        counts = self.data.counts()["train"]
        frequencies = torch.tensor([counts.get(n, 0) for n in self.class_names], dtype=torch.float)
        if (frequencies == 0).any():
            raise DataError("class_weights: every class needs training images")
        return frequencies.sum() / (len(frequencies) * frequencies)

    def _raw_dataloaders(self) -> tuple[Any, Any]:
        """(train, valid) loaders before Accelerate shards them."""
        if self._loaders is None:
            train_loader, valid_loader = self.data.dataloaders(
                self.preprocess, batch_augment=self.batch_augment is not None
            )
            if self.balanced_sampler:
                train_loader = _balanced_loader(train_loader, self.seed)
            self._loaders = (train_loader, valid_loader)
        return self._loaders

    def _dataloaders(self) -> tuple[Any, Any]:
        """(train, valid) loaders; under Accelerate, this process's shard of each."""
        loaders = self._raw_dataloaders()
        if self.accelerator is None:
            return loaders
        if self._prepared is None:
            self._prepared = (
                self.accelerator.prepare_data_loader(loaders[0]),
                self.accelerator.prepare_data_loader(loaders[1]),
            )
        return self._prepared

    # -- freezing ------------------------------------------------------------------------

    def freeze(self) -> None:
        """Train only the head, plus the body's batch-norm layers when ``train_bn`` (as fastai:
        they adapt the pretrained statistics to the new images at little cost)."""
        trainable = {id(p) for p in classifier_of(self.model).parameters()}
        if self.train_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    trainable.update(id(p) for p in module.parameters())
        for parameter in self.model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        self.frozen = True

    def unfreeze(self) -> None:
        """Train every layer."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)
        self.frozen = False

    # -- fitting -------------------------------------------------------------------------

    def _optimizer(self, lr: LearningRate) -> tuple[torch.optim.Optimizer, list[float]]:
        """AdamW over [early body, late body, head]; no weight decay on biases and norms."""
        groups = layer_groups(self.model)
        rates = _group_rates(lr, len(groups))
        param_groups, max_lrs = [], []
        for params, rate in zip(groups, rates, strict=True):
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for subset, wd in ((decay, self.weight_decay), (no_decay, 0.0)):
                if subset:
                    param_groups.append({"params": subset, "lr": rate, "weight_decay": wd})
                    max_lrs.append(rate)
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.99), eps=1e-5), max_lrs

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: LearningRate = 2e-3,
        *,
        div: float = 25.0,
        final_div: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        phase: str | None = None,
        keep_best: bool | None = None,
        baseline: BestTracker | None = None,
        patience: int | None = None,
    ) -> EpochTable:
        """Train ``epochs`` epochs with the one-cycle policy; returns the epochs run (a list of
        :class:`EpochRecord` that shows as the epoch table).

        The rate warms from ``lr_max/div`` to ``lr_max`` over ``pct_start`` of the
        steps, then anneals (cosine) to ``lr_max/final_div``; momentum (Adam's β1)
        moves the opposite way between ``moms``. ``keep_best`` (None: the Learner's
        option) ends with the best validated weights, of these epochs or of
        ``baseline`` (the weights and metric training starts from, e.g. the head fit's).
        ``patience`` (None: the Learner's option) stops after that many epochs without an
        improvement on the best so far (``baseline`` included).
        """
        if epochs < 1:
            raise ConfigError(f"epochs={epochs}: train for at least 1 epoch")
        if not 0.0 < pct_start < 1.0:
            raise ConfigError(f"pct_start={pct_start}: use a fraction between 0 and 1")
        settings = {
            "epochs": epochs,
            "lr_max": _as_list(lr_max),
            "frozen": self.frozen,
            "pct_start": pct_start,
            "div": div,
            "keep_best": keep_best,
        }
        if self._averaging_fit:  # fine_tune's fit that ends in the average: resume says so
            settings["average"] = True
            self._averaging_fit = False
        self._kept_record = None  # the weights move on: fine_tune names them
        fit_index, self._fit_index = self._fit_index, self._fit_index + 1
        start_epoch = self._resume_point(fit_index, settings)
        if start_epoch is None:  # this fit finished before the checkpoint was written
            finished = self._resumed_baseline
            keeps = keep_best if keep_best is not None else self.options.keep_best
            if keeps and finished is not None and finished.state is not None:
                unwrap(self.model).load_state_dict(finished.state)  # as the run ended
            self._fit_tracker = finished
            return EpochTable()
        train_loader, valid_loader = self._dataloaders()
        if len(train_loader) == 0:
            raise DataError("no training images; add images to the class folders")
        optimizer, max_lrs = self._optimizer(lr_max)
        # PyTorch's OneCycleLR ends at initial_lr / final_div_factor; fastai ends at
        # lr_max / final_div, so the factor given to PyTorch is final_div / div.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=max_lrs,
            total_steps=epochs * math.ceil(len(train_loader) / self.options.accumulate),
            pct_start=pct_start,
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=moms[1],
            max_momentum=moms[0],
            div_factor=div,
            final_div_factor=final_div / div,
        )
        options = self.options if keep_best is None else replace(self.options, keep_best=keep_best)
        if patience is not None:
            options = replace(options, patience=patience)
        tracker = baseline or BestTracker(options.monitor)
        if start_epoch > 0:  # continue this fit from the checkpoint
            tracker = self._restore_fit(optimizer, scheduler)
        else:
            self.fits.append(settings)
        model = (
            self.model if self.accelerator is None else self.accelerator.prepare_model(self.model)
        )

        def save(epochs_done: int, best: BestTracker, records: list[EpochRecord]) -> None:
            self._save_checkpoint(fit_index, epochs_done, optimizer, scheduler, best, records)

        started = time.perf_counter()
        try:
            records = fit(
                model, train_loader, valid_loader, optimizer, scheduler, epochs,
                loss_fn=self.loss_fn, device=self.device, logger=self.logger,
                options=options, frozen=self.frozen, train_bn=self.train_bn,
                phase=phase or ("frozen" if self.frozen else "all"),
                first_epoch=len(self.history) - start_epoch, start_epoch=start_epoch,
                tracker=tracker, accelerator=self.accelerator,
                save_checkpoint=save if self.checkpoint_dir is not None else None,
                batch_augment=self.batch_augment,
            )  # fmt: skip
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._interrupted_message()) from None
        finally:
            self.train_seconds += time.perf_counter() - started
        self.history.extend(records)
        self._fit_tracker = tracker
        return EpochTable(records)

    # -- checkpoints ---------------------------------------------------------------------

    def _interrupted_message(self) -> str:
        if self.checkpoint_dir is None:
            return "training interrupted; nothing was saved (use --checkpoint-dir to resume later)"
        last = self.checkpoint_dir / ckpt.LAST
        if not last.exists():
            return f"training interrupted in the first epoch: no checkpoint in {last.parent}"
        return (
            f"training interrupted; the last finished epoch is saved in {last}: "
            f"run the same command with --resume {self.checkpoint_dir} to continue"
        )

    def _save_checkpoint(
        self,
        fit_index: int,
        epochs_done: int,
        optimizer: torch.optim.Optimizer | None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        tracker: BestTracker,
        records: list[EpochRecord],
    ) -> None:
        """Write ``last.ckpt`` (main process only; the others wait for it). The head fit
        has no optimizer or scheduler to save."""
        assert self.checkpoint_dir is not None  # only called when there is one
        if self.is_main:
            generator = getattr(self._raw_dataloaders()[0], "generator", None)
            rng, rng_json = ckpt.capture_rng(generator)
            state = {
                "arch": self.arch,
                "class_names": list(self.class_names),
                "config": self.config.to_dict(),
                "data": self._data_record(),
                "fit_index": fit_index,
                "epochs_done": epochs_done,
                "history": [r.to_dict() for r in [*self.history, *records]],
                "fits": self.fits,
                "train_seconds": self.train_seconds,
                "tracker": {"monitor": tracker.monitor, "best": tracker.best,
                            "best_epoch": tracker.best_epoch, "stale": tracker.stale_epochs},
                "rng": rng_json,
            }  # fmt: skip
            ckpt.save_checkpoint(
                self.checkpoint_dir / ckpt.LAST,
                ckpt.Checkpoint(
                    state=state,
                    model=unwrap(self.model).state_dict(),
                    optimizer={} if optimizer is None else optimizer.state_dict(),
                    scheduler={} if scheduler is None else scheduler.state_dict(),
                    rng=rng,
                    best=tracker.state,
                ),
            )
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def _data_record(self) -> dict[str, Any]:
        """What a checkpoint records of the data, for resume to compare: the files (their
        fingerprint), labels and split, the input, the batch and the augmentation."""
        data = self.data
        record = {
            "dataset_fingerprint": data.fingerprint,
            "labels": data.spec.to_dict(),
            "valid_pct": data.config.valid_pct,
            "split_seed": data.config.seed,
            "stratify": data.config.stratify,
            "batch_size": data.batch_size,
            "augment": data.config.augment_name,
            "min_scale": data.config.min_scale,
            "preprocess": self.preprocess.to_dict(),
        }
        return dict(json.loads(json.dumps(record)))  # as state.json gives it back (lists)

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint (a ``.ckpt`` file or a ``checkpoint_dir``) to continue its run.

        Then call the same ``fine_tune`` / ``fit_one_cycle`` as the interrupted run: fits
        that had finished are skipped, the interrupted one continues from its last
        finished epoch with the optimizer, scheduler and random generators as they were,
        so the final weights equal those of an uninterrupted run with the same seed.
        """
        checkpoint = ckpt.load_checkpoint(path)
        state = checkpoint.state
        if state.get("class_names") != list(self.class_names):
            raise ckpt.CheckpointError(
                f"{path}: checkpoint of a run on classes {state.get('class_names')}, but this "
                f"run's data has {list(self.class_names)}; resume on the same data"
            )
        if "config" not in state:  # written before the config was recorded whole
            raise ckpt.CheckpointError(
                f"{path}: this checkpoint was written by an older ursa and does not record "
                f"its training settings; start the run again"
            )
        try:
            recorded = TrainConfig.from_dict(state["config"])
        except ConfigError as error:
            raise ckpt.CheckpointError(f"{path}: {error}") from None
        changed = recorded.differences(self.config)
        recorded_data = state.get("data")
        if isinstance(recorded_data, dict):
            changed += differences(recorded_data, self._data_record())
        if changed:
            raise ckpt.CheckpointError(
                f"{path}: this run's settings differ from the checkpoint's "
                f"({'; '.join(changed)}); resume with the same settings as the interrupted run"
            )
        try:
            unwrap(self.model).load_state_dict(checkpoint.model)
        except RuntimeError as error:
            raise ckpt.CheckpointError(
                f"{path}: weights do not fit this model ({error})"
            ) from error
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.fits = list(state["fits"])
        self.train_seconds = float(state["train_seconds"])
        self._fit_index = 0
        self._resume = checkpoint

    def _resume_point(self, fit_index: int, settings: dict[str, Any]) -> int | None:
        """The epoch at which fit ``fit_index`` starts: 0 normally; when resuming, None for a
        fit that had finished, or the epochs it had done."""
        if self._resume is None:
            return 0
        state = self._resume.state
        if fit_index >= len(self.fits):
            raise ckpt.CheckpointError(
                f"the checkpoint's run had {len(self.fits)} fit(s); this one asks for more: "
                f"resume with the same command (epochs, learning rate) as the interrupted run"
            )
        done = self.fits[fit_index]
        if done != settings:
            raise ckpt.CheckpointError(
                f"fit {fit_index} of the checkpoint's run used {done}, this one {settings}: "
                f"resume with the same command (epochs, learning rate) as the interrupted run"
            )
        if fit_index < state["fit_index"]:
            return None
        if state["epochs_done"] >= settings["epochs"]:
            # The checkpoint was written as this fit ended: the next fit starts from
            # its random generators.
            generator = getattr(self._raw_dataloaders()[0], "generator", None)
            ckpt.restore_rng(self._resume.rng, state["rng"], generator)
            # A finished head fit's checkpoint holds its keep-best candidate.
            self._resumed_baseline = _saved_tracker(self._resume)
            self._resume = None
            return None
        return int(state["epochs_done"])

    def _restore_fit(
        self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> BestTracker:
        """Optimizer, scheduler, generators and best-metric tracker from the checkpoint."""
        assert self._resume is not None  # only called while resuming
        checkpoint, self._resume = self._resume, None
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        generator = getattr(self._raw_dataloaders()[0], "generator", None)
        ckpt.restore_rng(checkpoint.rng, checkpoint.state["rng"], generator)
        return _saved_tracker(checkpoint)

    # -- the learning-rate finder ------------------------------------------------------

    def lr_find(
        self,
        *,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        steps: int = 100,
        lr_mult: float = 100.0,
    ) -> LRFindResult:
        """Sweep the learning rate for :meth:`fine_tune`'s unfrozen phase and suggest one
        (the "valley"; see :mod:`ursa.train.lr_find`): with the head fitted first (when no
        head fit has run yet), every layer trainable, rates spread over the layer groups
        as ``fine_tune`` spreads them (``lr_mult``); the swept rate is the head's. The
        model, optimizer state and random generators are restored afterwards, the head
        included. ``result.unusable`` says why a curve cannot be trusted (too few steps,
        no fall); ``result.plot("lr.png")`` draws it."""
        train_loader, _ = self._raw_dataloaders()
        saved = {k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()}
        frozen = self.frozen
        generator = getattr(train_loader, "generator", None)
        loader_state = generator.get_state() if generator is not None else None
        try:
            if self.head is None and not self.history:  # a fresh learner: as fine_tune starts
                self._fit_head_weights(0, None)
            self.unfreeze()
            optimizer, _ = self._optimizer((start_lr / lr_mult, start_lr))
            return lr_sweep(
                self.model, train_loader, optimizer, loss_fn=self.loss_fn, device=self.device,
                steps=steps, batch_size=self.data.batch_size, start_lr=start_lr,
                end_lr=end_lr, channels_last=self.options.channels_last,
                keep_bn_stats=self.options.keep_bn_stats,
            )  # fmt: skip
        finally:
            unwrap(self.model).load_state_dict(saved)
            if frozen:
                self.freeze()
            if generator is not None and loader_state is not None:
                generator.set_state(loader_state)

    # -- the head fit -------------------------------------------------------------------

    def _feature_passes(self, augmented_views: int) -> tuple[list[Pass], Any]:
        """What the head fit computes features of: the training images through the
        validation transform, mirrored too where the data may be flipped, then
        ``augmented_views`` passes of the training augmentation; and the validation
        loader. Augmented passes draw from their own seeded generators (the training
        loader's generator, which checkpoints hold, is not touched)."""
        from torch.utils.data import DataLoader

        from ursa.data.cache import cache_dataset

        train_loader, valid_loader = self._raw_dataloaders()
        clean = self.data.dataset(self.data.train_items, self.preprocess, training=False)
        if self.data.config.cache:
            clean.cache = cache_dataset(clean, name=f"{self.data.root} train (head fit)")
        batch = max(self.data.batch_size, 32)  # inference only: larger batches are faster

        def loader(dataset: Any, seed: int) -> Any:
            made = DataLoader(
                dataset, batch_size=batch, shuffle=False, num_workers=train_loader.num_workers,
                generator=torch.Generator().manual_seed(seed), pin_memory=train_loader.pin_memory,
            )  # fmt: skip
            return made if self.accelerator is None else self.accelerator.prepare_data_loader(made)

        passes: list[Pass] = [(loader(clean, self.seed), None)]
        if self.data.config.augment == "default":  # the preset flips: so may the head fit
            passes.append((loader(clean, self.seed), mirror))
        passes += [
            (loader(train_loader.dataset, self.seed + 1 + view), self.batch_augment)
            for view in range(augmented_views)
        ]
        return passes, (valid_loader if self.accelerator is None else self._dataloaders()[1])

    def fit_head(self, *, weight_decay: float | None = None, augmented_views: int = 0) -> HeadFit:
        """Fit the new head on the frozen body's pooled features (the "linear probe"),
        then copy it into the model; the body does not move. Features: every training
        image as validated, its mirror image where the data may be flipped, and
        ``augmented_views`` passes of the training augmentation. ``weight_decay`` (L2)
        is chosen by cross-validation on the training features unless given; the
        validation images are only scored. Logged and recorded as a "head" epoch."""
        if augmented_views < 0:
            raise ConfigError(f"augmented_views={augmented_views}: use 0 or more")
        settings = {"epochs": 1, "head": "fit", "augmented_views": augmented_views,
                    "weight_decay": weight_decay}  # fmt: skip
        fit_index, self._fit_index = self._fit_index, self._fit_index + 1
        if self._resume_point(fit_index, settings) is None:
            return self._resumed_head()
        if not self.data.train_items:
            raise DataError("no training images; add images to the class folders")
        self._kept_record = None
        started = time.perf_counter()
        self.logger.start_epoch(len(self.history), 0, "head")
        fitted, valid_loader = self._fit_head_weights(augmented_views, weight_decay)
        self.fits.append(settings)
        self.head = fitted
        valid = self._validate_loader(valid_loader)
        self._head_metrics = valid
        record = EpochRecord(
            epoch=len(self.history), phase="head", train_loss=fitted.train_loss,
            valid_loss=valid.loss, error_rate=valid.error_rate, accuracy=valid.accuracy,
            seconds=time.perf_counter() - started, macro_f1=valid.macro_f1,
        )  # fmt: skip
        self.train_seconds += record.seconds
        self.history.append(record)
        if self.checkpoint_dir is not None:
            baseline = self._head_baseline() or BestTracker(self.options.monitor)
            self._save_checkpoint(fit_index, 1, None, None, baseline, [])
        self.logger.end_epoch(record)
        return fitted

    def _fit_head_weights(
        self, augmented_views: int, weight_decay: float | None
    ) -> tuple[HeadFit, Any]:
        """Features, the fit, and the head copied into the model; nothing recorded.
        Returns the fit and the validation loader."""
        passes, valid_loader = self._feature_passes(augmented_views)
        model = unwrap(self.model)
        features = extract_features(
            model, passes, device=self.device, channels_last=self.options.channels_last,
            autocast=functools.partial(
                autocast_context, self.device, self.options, training=False
            ),
            accelerator=self.accelerator,
        )  # fmt: skip
        fitted = fit_linear_head(
            features, len(self.class_names), loss_fn=self.loss_fn, weight_decay=weight_decay,
            seed=self.seed,
        )  # fmt: skip
        fitted.apply_to(classifier_of(model))
        return fitted, valid_loader

    def _head_baseline(self) -> BestTracker | None:
        """The head fit's validation metric and weights, as the first candidate of keep-best
        (resumed past the head fit: as its checkpoint held them)."""
        if self._head_metrics is None:
            return self._resumed_baseline
        tracker = BestTracker(self.options.monitor)
        tracker.update(
            self.history[-1].epoch, self._head_metrics, unwrap(self.model),
            replace(self.options, keep_best=True),
        )  # fmt: skip
        return tracker

    def _resumed_head(self) -> HeadFit:
        """The head of a resumed run, as the checkpoint's weights hold it."""
        state = classifier_of(unwrap(self.model)).state_dict()
        return HeadFit(
            weight=state["weight"].detach().clone(), bias=state["bias"].detach().clone(),
            weight_decay=math.nan, train_loss=math.nan, cv_loss=None, rows=0, seconds=0.0,
        )  # fmt: skip

    def _validate_loader(self, valid_loader: Any) -> Metrics:
        return evaluate(
            self.model, valid_loader, loss_fn=self.loss_fn, device=self.device,
            accelerator=self.accelerator, channels_last=self.options.channels_last,
            autocast=functools.partial(
                autocast_context, self.device, self.options, training=False
            ),
            on_batch=getattr(self.logger, "valid_step", None),
        )  # fmt: skip

    def plot_history(self, path: str | Path | None = None) -> Figure:
        """Training / validation loss and accuracy per epoch, as a figure (a notebook shows
        it); ``path``: also write it as a PNG."""
        from ursa.train.plots import plot_history

        if not self.history:
            raise ConfigError("no epochs trained yet: plot the history after fitting")
        return plot_history(self.history, path)

    def fine_tune(
        self,
        epochs: int | None = None,
        base_lr: float | None = 2e-3,
        *,
        freeze_epochs: int = 1,
        lr_mult: float = 100.0,
        pct_start: float = 0.3,
        div: float = 5.0,
        head: Literal["fit", "epochs"] = "fit",
        keep_best: bool = True,
        average: bool = True,
    ) -> EpochTable:
        """fastai's recipe, head first: fit the new head with the body frozen, then train
        everything with discriminative rates.

        1. ``head="fit"`` (default): :meth:`fit_head`, the new head fitted to convergence
           on the frozen body's features (seconds; ``freeze_epochs`` is unused).
           ``head="epochs"``: fastai's way, ``freeze_epochs`` one-cycle epochs of the head
           (and batch norms) at ``base_lr`` with ``pct_start=0.99``.
        2. halve ``base_lr`` (None: after the head phase, :meth:`lr_find` suggests the
           rate, or says why it cannot and the default 2e-3 stays); unfreeze; one-cycle
           for ``epochs`` with rates from
           ``base_lr/lr_mult`` (first layers) to ``base_lr`` (head). ``epochs=None``
           chooses from the data's size (:func:`auto_epochs`).
        3. ``keep_best``: end with the weights of the best validated epoch (by
           ``monitor``), the head fit's included: fine-tuning a few dozen images can
           lose to the head alone, and then the head alone is what you get (said in
           the output). Needs validation images; without them the last epoch stays.
           With ``average`` (the default; it needs ``head="fit"`` and ``keep_best``) the
           model ends as the average of the head fit's and the last epoch's weights
           (weight-space ensembling, "WiSE-FT"), unless the head fit validates better
           (a tie keeps the head fit). Batch-norm statistics are kept from the pretrained
           body (``keep_bn_stats``), so both ends normalise alike and their average is
           a working network. On the small-data benchmark the average beat the head fit
           and the last epoch on the test set at 100 images a class, where picking the
           best epoch (or the last) on validation chose weights that were worse on test
           (docs/benchmarks.md). From :data:`LAST_EPOCH_MIN_IMAGES` training images the
           last epoch competes too, and the best validated of the three is kept: on all
           60,000 Fashion-MNIST images the average validated worse than the last epoch.
           ``average=False``: keep-best over the epochs, as before.
           Automatic epochs (``epochs=None``) after a head fit are none under
           :data:`FINE_TUNE_MIN_IMAGES` training images: the head fit is the model.

        Returns the epochs run, the head fit's included: a list of :class:`EpochRecord`
        that shows as the epoch table.
        """
        if epochs is not None and epochs < 1:
            raise ConfigError(f"epochs={epochs}: fine-tune for at least 1 epoch")
        if head not in ("fit", "epochs"):
            raise ConfigError(f"head={head!r}: use fit (the head fitted on features) or epochs")
        first = len(self.history)
        # Resuming, the restored history holds this run's finished epochs: it began at 0.
        began = 0 if self._resume is not None else first
        chosen = epochs is None
        if epochs is None:
            images = len(self.data.train_items)
            small = head == "fit" and images < FINE_TUNE_MIN_IMAGES
            epochs = 0 if small else auto_epochs(images, self.data.batch_size)
        find = base_lr is None and epochs > 0
        base_lr = DEFAULT_LR if base_lr is None else base_lr
        # Without the average, automatic epochs after a head fit (and no patience of the
        # user's) stop at the first unfrozen epoch that does not beat the best so far: the
        # first unfrozen epoch was worse than the head fit wherever recorded on the small-data
        # benchmark and a later one beat it in 1 run of 10 (docs/benchmarks.md).
        averages = average and head == "fit" and keep_best
        # Averaging wants the schedule's end: an early stop at the rate's peak left weights
        # whose average with the head was worse on test than the head alone (docs/training.md).
        auto_stop = (
            chosen and head == "fit" and keep_best and not averages
            and self.options.patience is None
        )  # fmt: skip
        plan = self._plan(
            epochs, chosen, base_lr / 2, lr_mult, head, freeze_epochs, find, stops=auto_stop,
            averages=averages,
        )  # fmt: skip
        self._say(plan)
        start_run = getattr(self.logger, "start_run", None)  # loggers older than the hook: none
        if start_run is not None:
            head_epochs = 1 if head == "fit" else freeze_epochs
            start_run(began, head_epochs + epochs)  # the average is a validation, no epoch
        baseline = None
        if head == "fit":
            self.freeze()
            self.fit_head()
            baseline = self._head_baseline() if keep_best else None
        elif freeze_epochs > 0:
            self.freeze()
            self.fit_one_cycle(freeze_epochs, base_lr, pct_start=0.99, phase="frozen")
        if find:
            rated = [fit for fit in self.fits if fit.get("frozen") is False]
            # Resuming: the rate the interrupted run found, not a sweep of half-tuned weights.
            base_lr = 2 * rated[-1]["lr_max"][-1] if rated else self._found_lr(lr_mult)
        base_lr /= 2
        self.unfreeze()
        if epochs > 0:
            self._averaging_fit = averages
            self.fit_one_cycle(
                epochs, (base_lr / lr_mult, base_lr), pct_start=pct_start, div=div,
                phase="unfrozen", keep_best=keep_best and not averages, baseline=baseline,
                patience=AUTO_PATIENCE if auto_stop else None,
            )  # fmt: skip
        kept = self.history[-1]
        tracker = self._fit_tracker
        if epochs == 0:
            pass  # the head fit alone: its weights are the model's
        elif averages:
            kept = self._average_with_head(self.history[began])
        elif keep_best and tracker is not None and tracker.state is not None:
            # keep-best restored its best epoch (the head fit's, when it was the baseline)
            kept = next((r for r in self.history if r.epoch == tracker.best_epoch), kept)
            if kept.phase == "head":
                self._say(
                    f"fine-tuning did not improve the head fit's {tracker.monitor} "
                    f"({tracker.best:.4f}): the model keeps the head fit's weights"
                )
        self._kept_record = kept
        self.warnings = training_warnings(
            kept.error_rate, len(self.class_names), len(self.data.valid_items)
        )
        for warning in self.warnings:
            self._say(warning, warning=True)
        return EpochTable(self.history[first:])

    def _average_with_head(self, head: EpochRecord) -> EpochRecord:
        """After the unfrozen fit: validate the average of the head fit's weights and the
        last epoch's, and end with the average unless the head fit (``head``, its record)
        validates better (a tie keeps the head fit); return the record of the weights
        kept. Under :data:`LAST_EPOCH_MIN_IMAGES` training images the last epoch alone is
        no candidate: on the small-data benchmark it was better than the head fit on
        validation and worse on test in 2 of 3 runs at 100 images a class, and the
        average beat it on test in all 6 runs measured (docs/benchmarks.md); from that
        many it competes too (ties keep the head fit, then the average). The head fit's
        weights are the fit's keep-best candidate (its tracker's state, also when
        resumed); without validation images there is none, and the last epoch stays."""
        tracker = self._fit_tracker
        if tracker is None or tracker.state is None:
            return self.history[-1]
        model = unwrap(self.model)
        head_state = tracker.state
        last = self.history[-1]
        last_state = None
        if len(self.data.train_items) >= LAST_EPOCH_MIN_IMAGES:
            last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(average_weights(head_state, model.state_dict()))
        started = time.perf_counter()
        epoch = len(self.history)
        self.logger.start_epoch(epoch, 0, "average")
        valid = self._validate_loader(self._dataloaders()[1])
        record = EpochRecord(
            epoch=epoch, phase="average", train_loss=math.nan, valid_loss=valid.loss,
            error_rate=valid.error_rate, accuracy=valid.accuracy,
            seconds=time.perf_counter() - started, macro_f1=valid.macro_f1,
        )  # fmt: skip
        self.train_seconds += record.seconds
        self.history.append(record)
        self.logger.end_epoch(record)
        monitor, delta = tracker.monitor, self.options.min_delta
        ours, theirs = getattr(record, monitor), getattr(head, monitor)
        scores = f"validation {monitor}: average {ours:.4f}, head fit {theirs:.4f}"
        best, best_score = head, theirs
        if improved(monitor, ours, best_score, delta):
            best, best_score = record, ours
        if last_state is not None:
            scores += f", last epoch {getattr(last, monitor):.4f}"
            if improved(monitor, getattr(last, monitor), best_score, delta):
                best = last
        if best is head:
            model.load_state_dict(head_state)
            self._say(f"the model keeps the head fit's weights ({scores})")
        elif best is last and last_state is not None:  # set where the last epoch competes
            model.load_state_dict(last_state)
            self._say(f"the model keeps the last epoch's weights ({scores})")
        else:
            self._say(
                "the model keeps the average of the head fit's and the last epoch's weights "
                f"({scores})"
            )
        return best

    def _found_lr(self, lr_mult: float) -> float:
        """``base_lr`` from the learning-rate finder, or the default where it cannot tell."""
        found = self.lr_find(lr_mult=lr_mult)
        if found.unusable is not None:
            self._say(
                f"lr-find cannot suggest a rate here ({found.unusable}); keeping the default "
                f"base rate {DEFAULT_LR:g}"
            )
            return DEFAULT_LR
        self._say(f"lr-find suggests {found.suggestion:.2e} (valley) for the head")
        return 2 * found.suggestion  # fine_tune halves base_lr for the unfrozen phase

    def _say(self, text: str, *, warning: bool = False) -> None:
        """A message through the logger (older loggers without ``message``: logging)."""
        message = getattr(self.logger, "message", None)
        if message is not None:
            message(text, warning=warning)
        elif warning:
            log.warning("%s", text)

    def _plan(
        self,
        epochs: int,
        chosen: bool,
        lr: float,
        lr_mult: float,
        head: str,
        freeze_epochs: int,
        find: bool = False,
        *,
        stops: bool = False,
        averages: bool = False,
    ) -> str:
        """One line saying what fine_tune is about to do, and which choices were automatic."""
        images, batch = len(self.data.train_items), self.data.batch_size
        steps = max(1, images // batch) if images > batch else 1
        auto_batch = " (automatic)" if self.data.config.batch_size is None else ""
        auto_epochs_note = " (automatic)" if chosen else ""
        first = (
            "the head fitted on the frozen body's features"
            if head == "fit"
            else f"{freeze_epochs} frozen epoch(s)"
        )
        stop = (
            " (stopping at one that does not beat the head fit or an earlier one)" if stops else ""
        )
        if epochs == 0:
            return (
                f"{images} training images, batch {batch}{auto_batch}: {first} alone (under "
                f"{FINE_TUNE_MIN_IMAGES} training images fine-tuning the body did not beat it "
                f"on the small-data benchmark; give the epochs, e.g. --epochs 3, to fine-tune "
                f"anyway); {self._precision_words(training=False)} on {self.device.type}"
            )
        end = ""
        if averages and images >= LAST_EPOCH_MIN_IMAGES:
            end = (
                ", then the best validated of the head fit, the last epoch and the average "
                "of their weights"
            )
        elif averages:
            end = (
                ", then the average of the head fit's and the last epoch's weights unless "
                "the head fit validates better"
            )
        return (
            f"{images} training images, batch {batch}{auto_batch}: {first}, then "
            f"{epochs} unfrozen epoch(s){auto_epochs_note}{stop} of {steps} steps at rates "
            + ("from lr-find" if find else f"{lr / lr_mult:.1e} to {lr:.1e}")
            + f"{end}; {self._precision_words()} on {self.device.type}"
        )

    def _precision_words(self, *, training: bool = True) -> str:
        """The run's precision as the output says it: ``bf16``, or ``fp32 training steps,
        bf16 inference`` where the two differ (``training=False``: inference's alone)."""
        train, inference = self.options.precision, self.options.inference_precision
        if not training or train == inference:
            return inference
        return f"{train} training steps, {inference} inference"

    # -- using the model -----------------------------------------------------------------

    def validate(self, *, tta: bool = False) -> Metrics:
        """Loss, error rate, accuracy, per-class scores, macro-F1 and top-k accuracy on the
        validation set. ``tta``: average the probabilities over the image and its
        test-time views (see :func:`tta_logits`)."""
        _, valid_loader = self._dataloaders()
        logits, labels = self._logits(valid_loader, tta=tta)
        if len(labels) == 0:
            return classification_metrics(logits, labels, math.nan)
        with torch.inference_mode():
            loss = float(self.loss_fn.cpu()(logits, labels))
        self.loss_fn.to(self.device)
        return classification_metrics(logits, labels, loss)

    def _logits(self, batches: Any, *, tta: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation logits in fp32, as the exported model computes them (the epoch
        table's validation runs in the precision of the passes without gradients, for
        speed; under bf16 the two can differ)."""
        model: nn.Module = self.model
        if tta:
            model = _TTAModel(self.model, flip=self.data.config.augment == "default")
        return predict_logits(
            model, batches, device=self.device, accelerator=self.accelerator,
            channels_last=self.options.channels_last,
        )  # fmt: skip

    @torch.inference_mode()
    def predict_batch(
        self, sources: Sequence[ImageSource], batch_size: int = 32, *, tta: bool = False
    ) -> list[Prediction]:
        """Predict several images (paths, bytes or PIL images), with the validation transform
        (``tta``: averaged over test-time views too)."""
        model: nn.Module = self.model
        if tta:
            model = _TTAModel(self.model, flip=self.data.config.augment == "default")
        model.eval()
        memory_format = (
            torch.channels_last if self.options.channels_last else torch.contiguous_format
        )
        results: list[Prediction] = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            inputs = np.stack([prepare_input(s, self.preprocess) for s in chunk])
            batch = torch.from_numpy(inputs).to(self.device, memory_format=memory_format)
            logits = model(batch).float().cpu().numpy()
            results += predictions_from_logits(logits, self.class_names)
        return results

    def predict(self, source: ImageSource, *, tta: bool = False) -> Prediction:
        """Predict one image (path, bytes or PIL image)."""
        return self.predict_batch([source], tta=tta)[0]

    def interpret(self, split: str = "valid", *, batch_size: int | None = None) -> Interpretation:
        """Confusion matrix, top losses, Grad-CAM and the model card for ``split``
        (valid, train or all): see :class:`ursa.interpret.Interpretation`.

        ``ursa.interpret`` is a later stage than ``ursa.train`` (imports flow from later
        stages to earlier ones), so it is imported here, inside the method, never at the
        top of this module (the import above is for type checkers only).
        """
        from ursa.interpret.interpretation import Interpretation

        return Interpretation.from_learner(self, split, batch_size=batch_size)

    def export(self, path: str | Path) -> Path:
        """Write the model as a ``.ursa`` bundle (atomic; no pickle)."""
        from ursa.train.export import export_learner

        return export_learner(self, Path(path))


class _TTAModel(nn.Module):
    """Test-time augmentation: the mean probability over the image, its mirror image (when
    the data may be flipped) and a 1.15x centre zoom, returned as log-probabilities (so
    softmax and argmax of the output are those of the averaged probabilities)."""

    def __init__(self, model: nn.Module, *, flip: bool) -> None:
        super().__init__()
        self.model = model
        self.flip = flip

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C)
        size = images.shape[-1]
        crop = round(size / 1.15)
        offset = (size - crop) // 2
        zoomed = nn.functional.interpolate(
            images[..., offset : offset + crop, offset : offset + crop],
            size=images.shape[-2:], mode="bilinear", align_corners=False, antialias=False,
        ).contiguous(memory_format=torch.channels_last)  # fmt: skip
        views = [images, zoomed] + ([images.flip(-1)] if self.flip else [])
        probabilities = torch.stack([self.model(v).float().softmax(dim=1) for v in views])
        return probabilities.mean(dim=0).clamp_min(1e-12).log()


DEFAULT_LR = 2e-3
"""fastai's ``fine_tune`` base rate."""

AUTO_STEPS = 48
"""The unfrozen optimizer steps :func:`auto_epochs` aims for."""

FINE_TUNE_MIN_IMAGES = 500
"""With automatic epochs after a head fit, smaller training sets are not fine-tuned: the
head fit is the model. On the small-data benchmark (Fashion-MNIST), fine-tuning and the
average beat the head fit on test at 1,000 training images on each of three seeds, and at
250 did not (-1.2, +1.4 and 0 points) while taking twice the time; sizes in between were
not measured (docs/benchmarks.md)."""

LAST_EPOCH_MIN_IMAGES = 10_000
"""From this many training images, ``fine_tune``'s last unfrozen epoch competes with the
average and the head fit, and the best validated of the three is kept; below, it is no
candidate. On Fashion-MNIST at 1,000 training images its lead on 500 validation images
did not hold on test in 2 of 3 runs; on all 60,000 the last epoch, kept this way, tested at
9.06 % on 9,000 held-out images against the average's 10.51 % (docs/benchmarks.md). Sizes
in between were not measured: 10,000 is a choice between the two."""

AUTO_PATIENCE = 1
"""Patience of fine_tune's unfrozen fit when its epochs are automatic (see fine_tune)."""


def average_weights(
    first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The mean of two state dicts of one model: floating-point tensors averaged, the
    others (such as batch norm's counters) taken from ``second``."""
    return {
        name: (first[name].to(value.device) + value) / 2 if value.is_floating_point() else value
        for name, value in second.items()
    }  # a checkpoint's weights come back on the CPU, the model's may be on a GPU


def auto_epochs(train_images: int, batch_size: int) -> int:
    """Unfrozen epochs for ``train_images`` in batches of ``batch_size``: about
    :data:`AUTO_STEPS` steps, at least 2 epochs and at most 4. With the head fitted first,
    fine-tuning refines a working model, so a short schedule suffices (measured on
    Fashion-MNIST at 100 a class: 5 epochs ended no better than 2), and every epoch of a
    large set costs minutes on a CPU."""
    steps = max(1, train_images // batch_size)
    return max(2, min(4, math.ceil(AUTO_STEPS / steps)))


def _saved_tracker(checkpoint: ckpt.Checkpoint) -> BestTracker:
    """The best-metric tracker a checkpoint holds, with its weights."""
    saved = checkpoint.state["tracker"]
    return BestTracker(
        monitor=saved["monitor"],
        best=saved["best"],
        best_epoch=saved["best_epoch"],
        stale_epochs=saved["stale"],
        state=checkpoint.best,
    )


def _balanced_loader(loader: Any, seed: int) -> Any:
    """The training loader re-made to draw every class equally often (with replacement)."""
    from torch.utils.data import DataLoader, WeightedRandomSampler

    dataset = loader.dataset
    labels = [dataset.class_to_index[item.label] for item in dataset.items]
    counts = np.bincount(labels, minlength=len(dataset.class_to_index))
    weights = [1.0 / counts[label] for label in labels]
    generator = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(weights, len(labels), replacement=True, generator=generator)
    workers = loader.num_workers
    balanced = DataLoader(
        dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=workers > 0, drop_last=loader.drop_last, pin_memory=loader.pin_memory,
        generator=generator,  # checkpoints save and restore it with the other generators
    )  # fmt: skip
    return balanced


def _as_list(lr: LearningRate) -> list[float]:
    return [float(v) for v in lr] if isinstance(lr, tuple) else [float(lr)]


def _group_rates(lr: LearningRate, groups: int) -> list[float]:
    """One rate per layer group: a float for all, or (low, high) spaced geometrically."""
    if isinstance(lr, tuple):
        low, high = lr
        if not (low > 0 and high > 0 and low <= high):
            raise ConfigError(f"lr={lr}: use (low, high) with 0 < low <= high")
        if groups == 1:
            return [high]
        return [float(v) for v in np.geomspace(low, high, groups)]
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr}: use a positive learning rate such as 2e-3")
    return [float(lr)] * groups
