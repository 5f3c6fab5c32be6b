from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import TINY_ARCH
from ursa.core.errors import ConfigError
from ursa.core.preprocess import preprocess
from ursa.data.core import ImageData
from ursa.interpret.gradcam import GradCAM, last_conv_stage
from ursa.models.backbones import create_model
from ursa.train import Learner, SilentLogger

SIZE = 128  # test_efficientnet reduces 32×: a 4 × 4 map, so a corner is one of 16 cells


def corner_image(rng: np.random.Generator, colour: tuple[int, int, int]) -> Image.Image:
    """Uniform noise everywhere, a coloured square in the top-left corner: the only signal."""
    pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    pixels[4:28, 4:28] = colour
    return Image.fromarray(pixels)


COLOURS = {"blue": (30, 30, 230), "red": (230, 30, 30)}


def test_gradcam_peaks_in_the_corner_where_the_object_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (tmp_path / name).mkdir()
        for index in range(16):
            corner_image(rng, colour).save(tmp_path / name / f"{index}.png")
    data = ImageData.from_folder(
        tmp_path, size=SIZE, batch_size=8, augment="none", num_workers=0, valid_pct=0.25, seed=0
    )
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fit_one_cycle(4, 1e-2)
    assert learner.validate().accuracy == 1.0  # solved, and only the corner can solve it

    images = [corner_image(rng, COLOURS["red"]) for _ in range(4)]
    inputs = torch.from_numpy(np.stack([preprocess(i, learner.preprocess) for i in images]))
    red = learner.class_names.index("red")
    maps = GradCAM(learner.model)(inputs, [red] * 4)
    assert maps.shape == (4, SIZE, SIZE) and maps.min() >= 0 and maps.max() == pytest.approx(1)
    half = SIZE // 2
    for heat in maps:
        row, column = np.unravel_index(heat.argmax(), heat.shape)
        assert row < half and column < half  # the peak is in the top-left quarter
        quarters = [heat[:half, :half], heat[:half, half:], heat[half:, :half], heat[half:, half:]]
        means = [float(q.mean()) for q in quarters]
        assert means[0] > 2 * max(means[1:]), means


def test_gradcam_leaves_the_model_as_it_was() -> None:
    model = create_model(TINY_ARCH, 3, pretrained=False)
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # a frozen body still gets a map
    model.train()
    inputs = torch.randn(2, 3, 64, 64)
    maps = GradCAM(model)(inputs, [0, 2])
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    assert last_conv_stage(model)[0] == "blocks.4"


def test_gradcam_refuses_what_it_cannot_explain() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(ConfigError, match="heatmap=False"):
        GradCAM(flat)
    model = create_model(TINY_ARCH, 3, pretrained=False)
    with pytest.raises(ConfigError, match="one class per image"):
        GradCAM(model)(torch.randn(2, 3, 32, 32), [0])
