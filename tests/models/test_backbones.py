from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.conftest import TINY_ARCH
from ursa.core.errors import WeightsError
from ursa.core.preprocess import PreprocessConfig, preprocess
from ursa.models.backbones import backbone_info, create_model, layer_groups, map_ordered_keys

# ImageNet-1k indices: 281-285 are the domestic cats; 967 espresso, 968 cup, 504 coffee mug.
IMAGENET_CATS = {281, 282, 283, 284, 285}
IMAGENET_COFFEE = {967, 968, 504}


def test_mapping_by_position_checks_shapes() -> None:
    source = {"_a": torch.zeros(2, 3), "_b": torch.zeros(4)}
    target = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    assert list(map_ordered_keys(source, target, source_name="x")) == ["a", "b"]
    with pytest.raises(WeightsError, match="shape"):
        map_ordered_keys(source, {"a": torch.ones(2, 3), "b": torch.ones(5)}, source_name="x")
    with pytest.raises(WeightsError, match="different architecture"):
        map_ordered_keys(source, {"a": torch.ones(2, 3)}, source_name="x")


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(WeightsError, match="unknown architecture 'efficientnet_lite9'"):
        create_model("efficientnet_lite9", 3)


def test_hub_unreachable_gives_the_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    real = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:  # the network edge: the hub cannot be reached
            raise ConnectionError("hub unreachable")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError) as caught:
        create_model(TINY_ARCH, 3, pretrained=True)
    message = str(caught.value)
    assert (
        "--weights" in message and "pretrained=False" in message and "efficientnet_lite0" in message
    )


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model(TINY_ARCH, None, pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_model(TINY_ARCH, 5, weights=path)
    body_key = next(k for k in source.state_dict() if k.startswith("conv_stem"))
    assert torch.equal(loaded.state_dict()[body_key], source.state_dict()[body_key])
    assert loaded.get_classifier().out_features == 5


def test_local_pth_weights_and_bad_files(tmp_path: Path) -> None:
    source = create_model(TINY_ARCH, None, pretrained=False)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    create_model(TINY_ARCH, 2, weights=path)  # a wrapped state dict loads too
    with pytest.raises(WeightsError, match="does not exist"):
        create_model(TINY_ARCH, 2, weights=tmp_path / "missing.pth")
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"nonsense")
    with pytest.raises(WeightsError, match="cannot read"):
        create_model(TINY_ARCH, 2, weights=garbage)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(3)}, str(other))
    with pytest.raises(WeightsError, match="do not fit"):
        create_model(TINY_ARCH, 2, weights=other)


def test_layer_groups_cover_every_parameter_once() -> None:
    model = create_model(TINY_ARCH, 4, pretrained=False)
    groups = layer_groups(model)
    assert len(groups) == 3
    flat = [id(p) for group in groups for p in group]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))
    assert {id(p) for p in groups[2]} == {id(p) for p in model.get_classifier().parameters()}


def _classify(arch: str, image: np.ndarray) -> set[int]:
    info = backbone_info(arch)
    model = create_model(arch, None).eval()
    config = PreprocessConfig(
        size=info.input_size,
        interpolation=info.interpolation,
        mean=info.mean,
        std=info.std,  # type: ignore[arg-type]
    )
    inputs = torch.from_numpy(preprocess(Image.fromarray(image).convert("RGB"), config))[None]
    with torch.no_grad():
        return set(model(inputs)[0].topk(3).indices.tolist())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_offline_imagenet_weights_see_a_cat_and_an_espresso(arch: str) -> None:
    from skimage import data

    cat_top3 = _classify(arch, data.chelsea())
    coffee_top3 = _classify(arch, data.coffee())
    info = backbone_info(arch)
    assert info.mean == (0.5, 0.5, 0.5) and info.interpolation == "bicubic"
    assert cat_top3 & IMAGENET_CATS, cat_top3
    assert coffee_top3 & IMAGENET_COFFEE, coffee_top3


@pytest.mark.slow
def test_offline_top1_is_right_for_lite0() -> None:
    from skimage import data

    info = backbone_info("efficientnet_lite0")
    model = create_model("efficientnet_lite0", None).eval()
    config = PreprocessConfig(size=224, mean=info.mean, std=info.std)
    for picture, expected in ((data.chelsea(), IMAGENET_CATS), (data.coffee(), {967})):
        inputs = torch.from_numpy(preprocess(Image.fromarray(picture), config))[None]
        with torch.no_grad():
            assert int(model(inputs).argmax()) in expected
