from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ursa
from tests.export.bundles import SIZE
from ursa.core.errors import BundleError, ConfigError, ImageError
from ursa.core.preprocess import PreprocessConfig
from ursa.data.core import ImageData
from ursa.export.model import Model
from ursa.serve import Predictor, available_providers


def test_import_ursa_serve_never_imports_torch(tiny_served: tuple[Path, Path]) -> None:
    image = sorted(tiny_served[1].rglob("*.png"))[0]
    code = (
        "import sys, ursa.serve, ursa.serve.app, ursa.serve.bench;"
        f"p = ursa.serve.Predictor({str(tiny_served[0])!r}); p.predict({str(image)!r});"
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_uses_onnx_runtime_when_torch_is_absent(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    """With torch unimportable, ursa.load serves a bundle with model.onnx and names the fix
    for one without."""
    from ursa.core.bundle import read_bundle, write_bundle

    plain = read_bundle(tiny_served[0])
    weights_only = write_bundle(
        tmp_path / "plain.ursa", plain.config, plain.read("model.safetensors"), plain.metrics
    )
    image = sorted(tiny_served[1].rglob("*.png"))[0]
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "import ursa\n"
        f"model = ursa.load({str(tiny_served[0])!r})\n"
        f"print(type(model).__name__, model.predict({str(image)!r}).label)\n"
        "try:\n"
        f"    ursa.load({str(weights_only)!r})\n"
        "except ursa.BundleError as error:\n"
        "    print('error:', error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert first.startswith("Predictor ")
    assert first.split()[1] == Model(plain).predict(image).label
    assert "--onnx" in second and "ursa[train]" in second


def test_load_dispatch(tiny_served: tuple[Path, Path]) -> None:
    assert isinstance(ursa.load(tiny_served[0]), Predictor)
    assert isinstance(ursa.load(tiny_served[0], backend="torch"), Model)


def test_preprocessing_equals_the_training_side_tensors(tiny_served: tuple[Path, Path]) -> None:
    bundle, folder = tiny_served
    predictor = Predictor(bundle)
    data = ImageData.from_folder(folder, size=SIZE, batch_size=64, num_workers=0, seed=0)
    config = PreprocessConfig(**predictor.config.preprocess.to_dict())
    _, valid = data.dataloaders(config)
    inputs, _ = next(iter(valid))  # (N, 3, 32, 32) torch tensors, as validation sees them
    ours = np.stack([predictor.prepare(item.path) for item in data.valid_items])
    np.testing.assert_allclose(ours, inputs.numpy(), atol=1e-6)


def test_batch_api_matches_single_predictions(tiny_served: tuple[Path, Path]) -> None:
    predictor = Predictor(tiny_served[0], threads=1)
    images = sorted(tiny_served[1].rglob("*.png"))[:10]
    batch = predictor.predict_batch(images, batch_size=4)
    singles = [predictor.predict(path) for path in images]
    assert [p.label for p in batch] == [p.label for p in singles]
    for a, b in zip(batch, singles, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
    raw = predictor.predict(images[0].read_bytes())
    assert raw.probabilities == pytest.approx(singles[0].probabilities, abs=1e-6)


def test_bad_input_and_settings_are_user_errors(tiny_served: tuple[Path, Path]) -> None:
    predictor = Predictor(tiny_served[0])
    with pytest.raises(ImageError, match="not an image"):
        predictor.predict(b"not an image at all")
    with pytest.raises(ConfigError, match="use one of cpu, cuda, tensorrt"):
        Predictor(tiny_served[0], provider="tpu")
    if "cuda" not in available_providers():
        with pytest.raises(ConfigError, match="onnxruntime-gpu"):
            Predictor(tiny_served[0], provider="cuda")
    with pytest.raises(ConfigError, match="threads=0"):
        Predictor(tiny_served[0], threads=0)
    described = predictor.describe()
    assert described["execution_providers"] == ["CPUExecutionProvider"]
    assert described["threads"] >= 1


def test_bundle_without_onnx_names_the_command(
    tmp_path: Path, tiny_served: tuple[Path, Path]
) -> None:
    from ursa.core.bundle import read_bundle, write_bundle

    plain = read_bundle(tiny_served[0])
    path = write_bundle(tmp_path / "p.ursa", plain.config, b"w", plain.metrics)
    with pytest.raises(BundleError, match=r"ursa export .*p\.ursa --onnx"):
        Predictor(path)
    with pytest.raises(BundleError, match="--int8 --calibrate DATA"):
        Predictor(path, int8=True)
