from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import ursa
from ursa.core.bundle import BundleConfig, read_bundle, write_bundle
from ursa.core.errors import BundleError
from ursa.core.preprocess import PreprocessConfig


def _config(**overrides: object) -> BundleConfig:
    values: dict[str, object] = {
        "arch": "test_efficientnet",
        "timm_name": "test_efficientnet",
        "class_names": ["a", "b"],
        "preprocess": PreprocessConfig(size=32),
    }
    values.update(overrides)
    return BundleConfig(**values)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "m.ursa", _config(), b"weights", {"history": []})
    bundle = read_bundle(path)
    assert bundle.config == _config()
    assert bundle.read("model.safetensors") == b"weights"
    assert bundle.metrics == {"history": []}
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metrics.json", "model.safetensors"]
        assert not any(name.endswith((".pkl", ".pt", ".pth")) for name in archive.namelist())


def test_failed_write_leaves_the_old_bundle_and_no_temporary(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "m.ursa", _config(), b"old", {})
    with pytest.raises(BundleError):
        write_bundle(path, _config(), b"new", {}, extra={"../escape": b"x"})
    assert read_bundle(path).read("model.safetensors") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.ursa"]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "m.ursa"
    path.write_text("hello")
    with pytest.raises(BundleError, match="not a zip file"):
        ursa.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle(tmp_path / "nope.ursa")


def test_foreign_zip(tmp_path: Path) -> None:
    path = _zip(tmp_path / "m.ursa", {"readme.txt": b"hi"})
    with pytest.raises(
        BundleError, match=r"missing config\.json, model\.safetensors, metrics\.json"
    ):
        read_bundle(path)


def test_foreign_config(tmp_path: Path) -> None:
    members = {"config.json": b'{"name": "x"}', "model.safetensors": b"", "metrics.json": b"{}"}
    with pytest.raises(BundleError, match="not an ursa bundle config"):
        read_bundle(_zip(tmp_path / "m.ursa", members))


def test_future_schema_version(tmp_path: Path) -> None:
    config = _config().to_dict() | {"schema_version": 99}
    members = {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": b"",
        "metrics.json": b"{}",
    }
    with pytest.raises(BundleError, match="schema version 99"):
        read_bundle(_zip(tmp_path / "m.ursa", members))


def test_bad_fields_are_all_named(tmp_path: Path) -> None:
    config = _config().to_dict() | {"class_names": ["a", "a"], "arch": 3}
    config["preprocess"]["resize"] = "zoom"
    members = {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": b"",
        "metrics.json": b"{}",
    }
    with pytest.raises(BundleError) as caught:
        read_bundle(_zip(tmp_path / "m.ursa", members))
    message = str(caught.value)
    assert "arch" in message and "class_names" in message and "resize" in message


def test_invalid_json(tmp_path: Path) -> None:
    members = {"config.json": b"{nope", "model.safetensors": b"", "metrics.json": b"{}"}
    with pytest.raises(BundleError, match=r"config\.json is not valid JSON"):
        read_bundle(_zip(tmp_path / "m.ursa", members))


def test_corrupt_member_is_detected(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "m.ursa", _config(), b"W" * 1000, {})
    raw = bytearray(path.read_bytes())
    offset = raw.find(b"W" * 1000)
    raw[offset + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="corrupt"):
        read_bundle(path)
