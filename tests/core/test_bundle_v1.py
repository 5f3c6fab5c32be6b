"""Bundles written before schema 2 (no training config recorded) still load and predict
the same."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.core.bundle import read_bundle
from ursa.data import ImageData
from ursa.data.as_trained import data_as_trained
from ursa.export.model import load
from ursa.train import Learner, SilentLogger


def _as_v1(bundle: Path, target: Path) -> Path:
    """Rewrite ``bundle`` as the ursa of schema 1 wrote it."""
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                config["schema_version"] = 1
                del config["training"]["config"]
                data = json.dumps(config, indent=2).encode()
            out.writestr(name, data)
    return target


@pytest.mark.slow
def test_a_v1_bundle_loads_and_predicts_identically(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "colours", per_class=8)
    data = ImageData.from_folder(folder, size=32, batch_size=8, num_workers=0, seed=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fit_one_cycle(1, 1e-2)
    v2 = learner.export(tmp_path / "v2.ursa")
    v1 = _as_v1(v2, tmp_path / "v1.ursa")
    old, new = read_bundle(v1), read_bundle(v2)
    assert old.config.schema_version == 1 and new.config.schema_version == 2
    assert old.config.record.config is None and new.config.record.config is not None
    assert old.config.data_settings() == new.config.data_settings()
    images = sorted(folder.rglob("*.png"))[:6]
    before = np.array([list(p.probabilities.values()) for p in load(v2).predict_batch(images)])
    after = np.array([list(p.probabilities.values()) for p in load(v1).predict_batch(images)])
    np.testing.assert_array_equal(before, after)
    same = [i.path for i in data_as_trained(old.config, folder).valid_items]
    assert same == [i.path for i in data_as_trained(new.config, folder).valid_items]


@pytest.mark.parametrize("key", ["valid_pct", "train_seconds", "seed", "batch_size"])
def test_a_boolean_is_no_number_in_the_training_record(key: str) -> None:
    from ursa.core.bundle import TrainingRecord
    from ursa.core.errors import BundleError

    with pytest.raises(BundleError, match=key):
        TrainingRecord.from_dict({key: True})
