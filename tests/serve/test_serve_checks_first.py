"""``ursa serve`` checks its port before loading anything, and serves a bundle without
model.onnx by exporting it first (saying so), where PyTorch is installed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.serve.client import request
from ursa.cli import app
from ursa.core.bundle import ONNX_NAME, WEIGHTS_NAME, read_bundle, write_bundle
from ursa.serve.bench import free_port, stop_process

runner = CliRunner()


@contextmanager
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def weights_only(tiny_served: tuple[Path, Path], target: Path) -> Path:
    """The tiny bundle as ``ursa train`` writes it: config, weights, metrics, no ONNX."""
    trained = read_bundle(tiny_served[0])
    return write_bundle(target, trained.config, trained.read(WEIGHTS_NAME), trained.metrics)


def test_a_busy_port_is_named_before_anything_loads(tmp_path: Path) -> None:
    missing = tmp_path / "not-written-yet.ursa"  # loading it would fail: nothing is loaded
    with busy_port() as port:
        result = runner.invoke(app, ["serve", str(missing), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "another ursa serve" in result.output and "--port" in result.output
    assert "no such bundle" not in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one message (wrapped at most once)


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", str(tmp_path / "m.ursa"), "--port", "70000"])
    assert result.exit_code == 1 and "--port 70000: use a port from 1 to 65535" in result.output


def test_a_bundle_without_onnx_is_exported_into_then_served(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = weights_only(tiny_served, tmp_path / "trained.ursa")
    assert ONNX_NAME not in read_bundle(bundle).members
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ursa", "serve", str(bundle), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # until the server says it is up, or exits
            lines.append(line)
            if line.startswith("serving "):
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        image = sorted((tiny_served[1] / "red").glob("*.png"))[0]
        status, answer = request(port, "POST", "/predict", image.read_bytes(), "image/png")
    finally:
        stop_process(process)
    text = "".join(lines)
    assert "has no model.onnx: exporting it into the bundle first" in text, text
    assert "model.onnx: parity on" in text and f"serving {bundle}" in text, text
    assert status == 200 and answer["label"] in ("blue", "green", "red"), answer
    assert ONNX_NAME in read_bundle(bundle).members  # kept: the next serve starts at once


def test_without_torch_a_bundle_without_onnx_says_what_to_install(
    tiny_served: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = weights_only(tiny_served, tmp_path / "trained.ursa")
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "from ursa.cli import main\n"
        f"sys.argv = ['ursa', 'serve', {str(bundle)!r}, '--port', '{free_port()}']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "has no model.onnx, and exporting one needs PyTorch" in result.stderr
    assert "pip install 'ursa[train]'" in result.stderr and "Traceback" not in result.stderr
    assert ONNX_NAME not in read_bundle(bundle).members


@pytest.mark.parametrize("provider", ["quantum", "CUDA "])
def test_provider_is_one_of_the_choices(tiny_served: tuple[Path, Path], provider: str) -> None:
    result = runner.invoke(app, ["serve", str(tiny_served[0]), "--provider", provider])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'cpu', 'cuda', 'tensorrt'" in result.output
