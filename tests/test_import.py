from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_ursa_is_light() -> None:
    code = "import sys, ursa; ursa.Prediction; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bundle_reading_needs_no_torch() -> None:
    code = (
        "import sys, ursa.core.bundle, ursa.core.imageio, ursa.core.preprocess;"
        "import ursa.core.prediction;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_cli_glue_needs_no_torch() -> None:
    """`ursa serve`, `ursa predict` and every error message go through these where only
    ursa[serve] is installed (an import of torch there is a ModuleNotFoundError). Of the
    training stage they load only the config the train flags are made from, which is
    plain dataclasses."""
    code = (
        "import sys, ursa.cli, ursa.cli.support, ursa.cli.serve, ursa.serve.app;"
        "print('torch' in sys.modules, 'timm' in sys.modules,"
        " ','.join(sorted(m for m in sys.modules if m.startswith('ursa.train'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "ursa.train,ursa.train.config"]


@pytest.mark.slow  # about a minute: one fresh interpreter per module
def test_every_module_imports_on_its_own() -> None:
    """A fresh interpreter per module: an import that works only after another module was
    imported first (a cycle) fails here."""
    import pkgutil

    import ursa

    names = sorted(info.name for info in pkgutil.walk_packages(ursa.__path__, "ursa."))
    assert len(names) > 50
    failed = []
    for name in names:
        run = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, text=True
        )
        if run.returncode:
            failed.append(f"{name}: {run.stderr.strip().splitlines()[-1]}")
    assert not failed, "\n".join(failed)
