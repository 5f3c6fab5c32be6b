"""Tiny trained bundles for the export and serve tests (timm's test_efficientnet, 32 px)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH, make_class_folder

#: Input side of the tiny test bundles.
SIZE = 32


def train_tiny_bundle(root: Path, *, per_class: int = 30) -> tuple[Path, Path]:
    """Fine-tune the tiny model on three colour classes; (bundle, data folder)."""
    from ursa.data.core import ImageData
    from ursa.train import Learner, SilentLogger

    folder = make_class_folder(root / "colours", per_class=per_class)
    data = ImageData.from_folder(
        folder, size=SIZE, batch_size=8, num_workers=0, seed=0, valid_pct=0.25
    )
    import torch

    threads = torch.get_num_threads()
    # One thread: a model this small gains nothing from two, and loses a lot to the
    # synchronisation when other work shares the cores.
    torch.set_num_threads(1)
    try:
        learner = Learner(data, arch=TINY_ARCH, pretrained=False, seed=0, logger=SilentLogger())
        learner.fine_tune(3, base_lr=2e-2)
        return learner.export(root / "tiny.ursa"), folder
    finally:
        torch.set_num_threads(threads)


def copy_bundle(source: Path, target: Path) -> Path:
    """A private copy, for tests that rewrite the bundle."""
    shutil.copyfile(source, target)
    return target


_CACHE: dict[str, tuple[Path, Path]] = {}


def shared_tiny_bundle(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One trained (fp32 + ONNX + int8) bundle per test session: (bundle, data folder).

    Tests that change it must work on a :func:`copy_bundle`.
    """
    if "tiny" not in _CACHE:
        from ursa.export.deploy import export_for_serving

        bundle, folder = train_tiny_bundle(factory.mktemp("tiny"))
        # int8 is meant for real backbones; this random-init toy loses a few points of its
        # 24-image validation accuracy to quantization, so the drop limit is lifted here.
        export_for_serving(bundle, onnx=True, int8=True, calibrate=folder, max_drop=100.0)
        _CACHE["tiny"] = (bundle, folder)
    return _CACHE["tiny"]
