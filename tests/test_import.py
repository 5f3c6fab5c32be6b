from __future__ import annotations

import subprocess
import sys


def test_import_ursa_is_light() -> None:
    code = "import sys, ursa; ursa.Prediction; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bundle_reading_needs_no_torch() -> None:
    code = (
        "import sys, ursa.export.bundle, ursa.data.imageio, ursa.data.preprocess, ursa.prediction;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
