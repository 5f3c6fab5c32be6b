"""Hostile bundles: every bad config.json / metrics.json is one BundleError at load (issue 14,
items 2 and 9), and random configs never give anything else (Hypothesis)."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ursa.core.bundle import (
    CONFIG_NAME,
    METRICS_NAME,
    WEIGHTS_NAME,
    BundleConfig,
    read_bundle,
    write_bundle,
)
from ursa.core.errors import BundleError, DataError
from ursa.core.preprocess import PreprocessConfig


def good_config() -> dict[str, Any]:
    return BundleConfig(
        arch="efficientnet_lite0",
        timm_name="efficientnet_lite0",
        class_names=["cat", "dog", "fox"],
        preprocess=PreprocessConfig(size=32),
        training={"epochs": 1, "seed": 0},
    ).to_dict()


def zip_bundle(path: Path, config: Any, metrics: Any = None, *, raw: bytes | None = None) -> Path:
    """A bundle whose config.json is ``config`` as JSON (or ``raw`` bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(CONFIG_NAME, raw if raw is not None else json.dumps(config))
        archive.writestr(WEIGHTS_NAME, b"")
        archive.writestr(METRICS_NAME, json.dumps({} if metrics is None else metrics))
    return path


def refused(path: Path) -> str:
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    message = str(caught.value)
    assert "\n" not in message.strip(), message  # one line
    return message


def test_a_good_config_loads(tmp_path: Path) -> None:
    config = read_bundle(zip_bundle(tmp_path / "good.ursa", good_config())).config
    assert config.class_names == ["cat", "dog", "fox"]


@pytest.mark.parametrize(
    "name",
    ["../../outside/escaped", "/etc/passwd", "", ".", "..", ".hidden", "a/b", "a\\b", "a\x00b",
     "bell\x1b[31m", "new\nline"],
)  # fmt: skip
def test_class_names_that_would_become_paths_are_refused(tmp_path: Path, name: str) -> None:
    config = good_config()
    config["class_names"] = ["cat", name]
    assert "class name" in refused(zip_bundle(tmp_path / "b.ursa", config))


def test_unusual_but_harmless_class_names_load(tmp_path: Path) -> None:
    config = good_config()
    config["class_names"] = ["error", "ok", "label", "path", "teddy bear", "ours 🐻", "a.b"]
    assert read_bundle(zip_bundle(tmp_path / "b.ursa", config)).config.class_names[0] == "error"


def test_deeply_nested_config_is_a_bundle_error_not_a_recursion_error(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert "nested" in refused(zip_bundle(tmp_path / "deep.ursa", None, raw=deep))


def test_nesting_that_parses_but_would_break_encoders_is_refused(tmp_path: Path) -> None:
    config = good_config()
    nested: Any = 1
    for _ in range(900):
        nested = [nested]
    config["training"] = {"notes": nested}
    assert "nested" in refused(zip_bundle(tmp_path / "deep.ursa", config))
    assert "nested" in refused(zip_bundle(tmp_path / "m.ursa", good_config(), {"x": nested}))


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("input", "image", "input"),
        ("input", ["kind", "audio"], "input"),
        ("mean", [float("nan"), 0.5, 0.5], "mean"),
        ("std", [1e-30, 0.5, 0.5], "std"),
        ("std", [0.5, 0.5], "std"),
        ("std", ["a", 0.5, 0.5], "std"),
        ("size", 12_000, "size"),
        ("size", True, "size"),
        ("size", "224", "size"),
        ("reduced_decode", "false", "reduced_decode"),
        ("resize", ["crop"], "resize"),
    ],
)
def test_bad_preprocess_values_are_one_line_bundle_errors(
    tmp_path: Path, key: str, value: Any, says: str
) -> None:
    config = good_config()
    config["preprocess"][key] = value
    if key in ("mean", "std") and isinstance(value, list) and value and value[0] != value[0]:
        raw = json.dumps(config).encode()  # NaN is written as the bare word NaN
        assert says in refused(zip_bundle(tmp_path / "b.ursa", None, raw=raw))
    else:
        assert says in refused(zip_bundle(tmp_path / "b.ursa", config))


@pytest.mark.parametrize("version", [True, 1.0, "1", None, 3, 0])
def test_schema_version_must_be_an_integer_this_ursa_reads(tmp_path: Path, version: Any) -> None:
    config = good_config()
    config["schema_version"] = version
    assert "schema version" in refused(zip_bundle(tmp_path / "b.ursa", config))


def test_a_training_record_that_cannot_rebuild_the_split_is_a_bundle_error(
    tmp_path: Path,
) -> None:
    config = good_config()
    config["training"] = {"seed": "not a number", "valid_pct": [1]}
    loaded = read_bundle(zip_bundle(tmp_path / "b.ursa", config)).config
    with pytest.raises(BundleError, match="training record"):
        loaded.data_settings()


def test_training_refuses_labels_the_bundle_could_not_hold(tmp_path: Path) -> None:
    """The same rule at training time, before any image is decoded: a CSV label with a
    slash trained before, and then its bundle would have been refused."""
    from PIL import Image

    from ursa.data.core import ImageData

    for index in range(4):
        Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(tmp_path / f"{index}.png")
    (tmp_path / "labels.csv").write_text(
        "fname,label\n0.png,cat\n1.png,cat\n2.png,../up\n3.png,../up\n"
    )
    with pytest.raises(DataError, match=r"cannot be class names .*'\.\./up' contains '/'"):
        ImageData.from_csv(tmp_path / "labels.csv", size=32)


# Property tests: whatever config.json says, loading gives a config or a BundleError.

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PREPROCESS_KEYS = ("size", "resize", "pad_mode", "interpolation", "mean", "std", "input",
                   "reduced_decode")  # fmt: skip
INPUT_KINDS = ("image", "audio", "bytes")
INPUT_KEYS = ("sample_rate", "duration", "n_mels", "n_fft", "hop_length", "f_min", "f_max",
              "top_db", "max_seconds", "suffixes", "max_bytes", "width")  # fmt: skip
TOP_KEYS = ("format", "schema_version", "arch", "timm_name", "class_names", "preprocess",
            "training", "dataset_fingerprint", "ursa_version")  # fmt: skip


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A good config with a few values replaced by arbitrary JSON (or removed)."""
    config = good_config()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            key = draw(st.sampled_from(PREPROCESS_KEYS))
            target = config.get("preprocess")
        else:
            key = draw(st.sampled_from(TOP_KEYS))
            target = config
        if isinstance(target, dict):
            if draw(st.integers(0, 5)) == 0:
                target.pop(key, None)
            else:
                target[key] = draw(json_values)
    if draw(st.booleans()):
        names = draw(st.lists(st.text(max_size=6), min_size=0, max_size=5))
        config["class_names"] = names
    if isinstance(config.get("preprocess"), dict) and draw(st.booleans()):
        source: dict[str, Any] = {"kind": draw(st.sampled_from(INPUT_KINDS) | json_values)}
        for key in draw(st.lists(st.sampled_from(INPUT_KEYS), max_size=3)):
            source[key] = draw(json_values)
        config["preprocess"]["input"] = source
    return config


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(config=mutated_configs())
def test_any_config_loads_or_is_a_bundle_error(tmp_path: Path, config: dict[str, Any]) -> None:
    path = zip_bundle(tmp_path / "random.ursa", None, raw=json.dumps(config).encode())
    try:
        loaded = read_bundle(path).config
    except BundleError:
        return
    # What loads is usable: its class names are safe folder names, its preprocessing sane,
    # and asking it for the data settings is a value or a BundleError.
    from ursa.core.safepaths import class_name_problem

    assert all(class_name_problem(name) is None for name in loaded.class_names)
    assert 8 <= loaded.preprocess.size <= 2048
    with contextlib.suppress(BundleError):
        loaded.data_settings()


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    config = BundleConfig.from_dict(good_config(), source="test")
    path = write_bundle(tmp_path / "w.ursa", config, b"", {"history": []})
    assert read_bundle(path).config == config


@pytest.mark.parametrize(
    "source",
    [
        {"kind": "audio", "sample_rate": 384_000, "duration": 600.0, "hop_length": 1},
        {"kind": "audio", "max_seconds": float("inf")},
        {"kind": "bytes", "width": 10**9},
        {"kind": "video"},
    ],
)
def test_input_settings_that_would_exhaust_memory_are_refused(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    config = good_config()
    config["preprocess"]["input"] = source
    raw = json.dumps(config).encode()  # inf is written as the bare word Infinity
    assert "preprocess" in refused(zip_bundle(tmp_path / "b.ursa", None, raw=raw))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.export.bundles import shared_tiny_bundle

    return shared_tiny_bundle(tmp_path_factory)[0]


def with_class_names(source: Path, target: Path, names: list[str]) -> Path:
    """A copy of ``source`` whose config.json lists ``names`` (the weights unchanged)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == CONFIG_NAME:
                config = json.loads(data)
                config["class_names"] = names
                data = json.dumps(config).encode()
            new.writestr(info.filename, data)
    return target


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_more_class_names_than_outputs_is_refused_at_load(
    tiny_bundle: Path, tmp_path: Path, backend: str
) -> None:
    """Five names on a three-output model used to load, then every prediction was a 500."""
    import ursa

    bad = with_class_names(tiny_bundle, tmp_path / "five.ursa", ["a", "b", "c", "d", "e"])
    with pytest.raises(BundleError, match=r"5 classes|names 5") as caught:
        ursa.load(bad, backend=backend)
    assert "\n" not in str(caught.value)
    fine = with_class_names(tiny_bundle, tmp_path / "three.ursa", ["x", "y", "z"])
    assert ursa.load(fine, backend=backend).class_names == ["x", "y", "z"]
