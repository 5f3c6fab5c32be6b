"""Turn a trained Learner into a ``.ursa`` bundle."""

from __future__ import annotations

import math
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save

from ursa.core.bundle import BundleConfig, write_bundle
from ursa.core.version import __version__

if TYPE_CHECKING:
    from ursa.train.learner import Learner


def _clean(value: float) -> float | None:
    """JSON has no NaN: metrics that could not be computed become null."""
    return None if math.isnan(value) else value


def export_learner(learner: Learner, path: Path) -> Path:
    """Write ``learner``'s model, config and metrics as a bundle at ``path``.

    Under Accelerate every process must call this (the final validation is shared
    out and gathered); only the main process writes.
    """
    data = learner.data
    final = learner.validate() if data.valid_items else None
    learner.final_metrics = final
    if not learner.is_main:
        if learner.accelerator is not None:
            learner.accelerator.wait_for_everyone()
        return path
    training = training_record(learner)
    config = BundleConfig(
        arch=learner.arch,
        timm_name=learner.timm_name,
        class_names=list(learner.class_names),
        preprocess=learner.preprocess,
        training=training,
        dataset_fingerprint=data.fingerprint,
        ursa_version=__version__,
    )
    metrics = {
        "history": [
            {k: (_clean(v) if isinstance(v, float) else v) for k, v in r.to_dict().items()}
            for r in learner.history
        ],
        "final": None
        if final is None
        else {
            "valid_loss": _clean(final.loss),
            "error_rate": _clean(final.error_rate),
            "accuracy": _clean(final.accuracy),
            "macro_f1": _clean(final.macro_f1),
            "top_k_accuracy": {str(k): v for k, v in final.top_k.items()},
            "per_class": {
                name: {
                    "precision": _clean(c.precision),
                    "recall": _clean(c.recall),
                    "f1": _clean(c.f1),
                    "support": c.support,
                }
                for name, c in zip(learner.class_names, final.per_class, strict=True)
            },
            "count": final.count,
        },
        "counts": data.counts(),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in learner.model.state_dict().items()}
    written = write_bundle(path, config, save(state), metrics)
    if learner.accelerator is not None:
        learner.accelerator.wait_for_everyone()
    return written


def training_record(learner: Learner) -> dict[str, Any]:
    """What the bundle's ``training`` record says about ``learner``'s run (the report's
    training section reads the same record, for a bundle or a learner in memory)."""
    data = learner.data
    return {
        "config": learner.config.to_dict(),
        "fits": learner.fits,
        "epochs": sum(1 for r in learner.history if r.phase != "average"),  # a validation only
        "seed": learner.seed,
        "pretrained": learner.pretrained,
        "batch_size": data.batch_size,
        "batch_size_automatic": data.config.batch_size is None,
        "head_fit": None
        if learner.head is None
        else {
            "weight_decay": _clean(learner.head.weight_decay),
            "rows": learner.head.rows,
            "cv_loss": learner.head.cv_loss,
            "seconds": round(learner.head.seconds, 2),
        },
        "warnings": list(learner.warnings),
        "kept": learner.kept,
        "augment": data.config.augment_name,
        "valid_pct": data.config.valid_pct,
        "stratify": data.config.stratify,
        "data": data.spec.to_dict(),
        "train_images": len(data.train_items),
        "valid_images": len(data.valid_items),
        "skipped_files": len(data.skipped),
        "train_seconds": round(learner.train_seconds, 2),
        "device": str(learner.device),
        "options": asdict(learner.options),
        "processes": 1 if learner.accelerator is None else learner.accelerator.num_processes,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
