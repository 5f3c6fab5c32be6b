"""``pip install "ursa[serve]"`` into a fresh venv (no torch), then serve a bundle with model.onnx.

Reaches the package index (PyPI or its configured mirror), nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import venv
from pathlib import Path

import pytest

from tests.serve.client import request
from ursa.serve import Predictor
from ursa.serve.bench import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_serve_extra_installs_without_torch_and_serves(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    source = tmp_path / "source"  # a copy, so that the build leaves the checkout untouched
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{source}[serve]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "True"  # the serve extra pulled no torch in

    port = free_port()
    server = subprocess.Popen(
        [str(environment / "bin" / "ursa"), "serve", str(tiny_served[0]), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        image = sorted((tiny_served[1] / "blue").glob("*.png"))[0]
        status, answer = request(port, "POST", "/predict", image.read_bytes(), "image/png")
        assert status == 200, answer
        assert answer["label"] == Predictor(tiny_served[0]).predict(image).label
        status, html = request(port, "GET", "/live")
        assert status == 200 and "chart" in html  # the pages came along as package data
    finally:
        server.terminate()
        server.wait(timeout=10)
