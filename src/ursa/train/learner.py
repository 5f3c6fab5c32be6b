"""The Learner: a backbone with a new head, fitted with fastai's recipe, exported as a bundle."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ursa.data.core import ImageData
from ursa.data.imageio import ImageSource
from ursa.data.preprocess import PreprocessConfig, prepare_input
from ursa.errors import ConfigError, DataError, UrsaError
from ursa.models.backbones import backbone_info, classifier_of, create_model, layer_groups
from ursa.prediction import Prediction, predictions_from_logits
from ursa.train import checkpoint as ckpt
from ursa.train.distributed import make_accelerator, world_size
from ursa.train.loop import BestTracker, FitOptions, Precision, fit, predict_logits, unwrap
from ursa.train.lr_find import LRFindResult, lr_sweep
from ursa.train.metrics import Metrics, classification_metrics
from ursa.train.progress import EpochRecord, PrintLogger, SilentLogger, TrainingLogger

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ursa.interpret.interpretation import Interpretation

log = logging.getLogger(__name__)

LearningRate = float | tuple[float, float]
"""One rate for every layer group, or (first layers, head) spread geometrically between."""


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TrainingInterrupted(UrsaError):
    """Training stopped by Ctrl-C; the message says how to resume."""


def _auto_precision(device: torch.device) -> Precision:
    """bf16 on a CUDA GPU that has it, fp16 on older GPUs, fp32 on the CPU."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class Learner:
    """Fine-tunes a pretrained backbone on an :class:`~ursa.data.ImageData`.

    >>> learner = Learner(data, arch="efficientnet_lite0")
    >>> learner.fine_tune(3)
    >>> learner.export("bears.ursa")
    """

    def __init__(
        self,
        data: ImageData,
        arch: str = "efficientnet_lite0",
        *,
        pretrained: bool = True,
        weights: str | Path | None = None,
        drop_rate: float = 0.2,
        weight_decay: float = 0.01,
        train_bn: bool = True,
        seed: int | None = None,
        device: str | torch.device | None = None,
        logger: TrainingLogger | None = None,
        label_smoothing: float = 0.0,
        class_weights: bool = False,
        balanced_sampler: bool = False,
        accumulate: int = 1,
        clip_norm: float | None = None,
        precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
        channels_last: bool = True,
        monitor: str = "valid_loss",
        patience: int | None = None,
        keep_best: bool = False,
        checkpoint_dir: str | Path | None = None,
        distributed: bool | None = None,
    ) -> None:
        """``label_smoothing``: spread this much target mass over the other classes.
        ``class_weights``: weigh the loss by inverse class frequency; ``balanced_sampler``:
        draw training images so each class is equally likely (for imbalanced data).
        ``accumulate``, ``clip_norm``, ``precision``, ``channels_last``, ``monitor``,
        ``patience``, ``keep_best``: see :class:`~ursa.train.loop.FitOptions`
        (``precision="auto"``: bf16 or fp16 on CUDA, fp32 on the CPU). ``checkpoint_dir``:
        write ``last.ckpt`` there after every epoch (resume with :meth:`resume`).
        ``distributed``: use Accelerate's process group; None: when launched with
        several processes (``accelerate launch``)."""
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate={drop_rate}: use a probability from 0 up to 1")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay={weight_decay}: use 0 or more")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing}: use 0 up to 1, such as 0.1")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision={precision!r}: use auto, fp32, bf16 or fp16")
        self.data = data
        self.arch = arch
        self.seed = data.config.seed if seed is None else seed
        self.weight_decay = weight_decay
        self.train_bn = train_bn
        self.accelerator: Accelerator | None = None
        if distributed or (distributed is None and world_size() > 1):
            cpu = device is not None and torch.device(device).type == "cpu"
            self.accelerator = make_accelerator(cpu=cpu or not torch.cuda.is_available())
            self.device = self.accelerator.device
        else:
            self.device = torch.device(device) if device is not None else default_device()
        self.is_main = self.accelerator is None or self.accelerator.is_main_process
        # Only the main process reports; the others train silently.
        self.logger: TrainingLogger = (logger or PrintLogger()) if self.is_main else SilentLogger()
        self.options = FitOptions(
            accumulate=accumulate,
            clip_norm=clip_norm,
            precision=_auto_precision(self.device) if precision == "auto" else precision,
            channels_last=channels_last,
            monitor=monitor,
            patience=patience,
            keep_best=keep_best,
        )
        self.balanced_sampler = balanced_sampler
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
            drop_rate=drop_rate,
        ).to(self.device)
        if channels_last:
            # NHWC: the CPU's (oneDNN) and the GPU's (cuDNN) fast convolution kernels;
            # measured 4-5x faster training steps for EfficientNet-Lite0 on a CPU.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.pretrained = pretrained or weights is not None
        weight = self._class_weights() if class_weights else None
        self.loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        self.loss_fn.to(self.device)
        self.history: list[EpochRecord] = []
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
    ) -> list[EpochRecord]:
        """Train ``epochs`` epochs with the one-cycle policy.

        The rate warms from ``lr_max/div`` to ``lr_max`` over ``pct_start`` of the
        steps, then anneals (cosine) to ``lr_max/final_div``; momentum (Adam's β1)
        moves the opposite way between ``moms``.
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
        }
        fit_index, self._fit_index = self._fit_index, self._fit_index + 1
        start_epoch = self._resume_point(fit_index, settings)
        if start_epoch is None:
            return []  # this fit finished before the checkpoint being resumed was written
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
        tracker = BestTracker(self.options.monitor)
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
                options=self.options, frozen=self.frozen, train_bn=self.train_bn,
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
        return records

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
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        tracker: BestTracker,
        records: list[EpochRecord],
    ) -> None:
        """Write ``last.ckpt`` (main process only; the others wait for it)."""
        assert self.checkpoint_dir is not None  # only called when there is one
        if self.is_main:
            generator = getattr(self._raw_dataloaders()[0], "generator", None)
            rng, rng_json = ckpt.capture_rng(generator)
            state = {
                "arch": self.arch,
                "class_names": list(self.class_names),
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
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng=rng,
                    best=tracker.state,
                ),
            )
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint (a ``.ckpt`` file or a ``checkpoint_dir``) to continue its run.

        Then call the same ``fine_tune`` / ``fit_one_cycle`` as the interrupted run: fits
        that had finished are skipped, the interrupted one continues from its last
        finished epoch with the optimizer, scheduler and random generators as they were,
        so the final weights equal those of an uninterrupted run with the same seed.
        """
        checkpoint = ckpt.load_checkpoint(path)
        state = checkpoint.state
        if state.get("arch") != self.arch or state.get("class_names") != list(self.class_names):
            raise ckpt.CheckpointError(
                f"{path}: checkpoint of {state.get('arch')} on classes {state.get('class_names')}, "
                f"but this run is {self.arch} on {list(self.class_names)}; resume with the same "
                f"architecture and data"
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
        saved = checkpoint.state["tracker"]
        return BestTracker(
            monitor=saved["monitor"],
            best=saved["best"],
            best_epoch=saved["best_epoch"],
            stale_epochs=saved["stale"],
            state=checkpoint.best,
        )

    # -- the learning-rate finder ------------------------------------------------------

    def lr_find(
        self, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100
    ) -> LRFindResult:
        """Sweep the learning rate over at most one pass of the training data and suggest
        one (the "valley"; see :mod:`ursa.train.lr_find`). The model, optimizer state and
        random generators are restored afterwards. ``result.plot("lr.png")`` draws it."""
        train_loader, _ = self._raw_dataloaders()
        optimizer, _ = self._optimizer(start_lr)
        generator = getattr(train_loader, "generator", None)
        loader_state = generator.get_state() if generator is not None else None
        try:
            return lr_sweep(
                self.model, train_loader, optimizer, loss_fn=self.loss_fn, device=self.device,
                steps=steps, batch_size=self.data.config.batch_size, start_lr=start_lr,
                end_lr=end_lr, channels_last=self.options.channels_last,
            )  # fmt: skip
        finally:
            if generator is not None and loader_state is not None:
                generator.set_state(loader_state)

    def plot_history(self, path: str | Path) -> Path:
        """Training / validation loss and accuracy per epoch, as a PNG."""
        from ursa.train.plots import plot_history

        if not self.history:
            raise ConfigError("no epochs trained yet: plot the history after fitting")
        return plot_history(self.history, Path(path))

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        *,
        freeze_epochs: int = 1,
        lr_mult: float = 100.0,
        pct_start: float = 0.3,
        div: float = 5.0,
    ) -> list[EpochRecord]:
        """fastai's recipe: train the head alone, then everything with discriminative rates.

        1. freeze the body; one-cycle for ``freeze_epochs`` at ``base_lr`` with
           ``pct_start=0.99`` (nearly all warm-up);
        2. halve ``base_lr``; unfreeze; one-cycle for ``epochs`` with rates from
           ``base_lr/lr_mult`` (first layers) to ``base_lr`` (head).
        """
        if epochs < 1:
            raise ConfigError(f"epochs={epochs}: fine-tune for at least 1 epoch")
        records: list[EpochRecord] = []
        if freeze_epochs > 0:
            self.freeze()
            records += self.fit_one_cycle(freeze_epochs, base_lr, pct_start=0.99, phase="frozen")
        base_lr /= 2
        self.unfreeze()
        records += self.fit_one_cycle(
            epochs, (base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, phase="unfrozen"
        )
        return records

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
        if not tta:
            return predict_logits(
                self.model, batches, device=self.device, accelerator=self.accelerator,
                channels_last=self.options.channels_last,
            )  # fmt: skip
        flip = self.data.config.augment == "default"
        views = ((images, labels) for images, labels in batches)
        return predict_logits(
            _TTAModel(self.model, flip=flip), views, device=self.device,
            accelerator=self.accelerator, channels_last=self.options.channels_last,
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
