"""``ursa serve``: the inference server (upload page, live page, JSON API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from ursa.cli.support import console, user_errors


def serve(
    bundle: Annotated[
        Path, typer.Argument(help="A .ursa bundle (model.onnx is added first if it is missing).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", envvar="URSA_WORKERS")] = 1,
    int8: Annotated[
        bool, typer.Option("--int8", help="Serve model.int8.onnx.", envvar="URSA_INT8")
    ] = False,
    provider: Annotated[
        Literal["cpu", "cuda", "tensorrt"],
        typer.Option(help="ONNX Runtime execution provider.", envvar="URSA_PROVIDER"),
    ] = "cpu",
    threads: Annotated[
        int | None, typer.Option(help="Model threads per process.", envvar="URSA_THREADS")
    ] = None,
) -> None:
    """Serve BUNDLE over HTTP: web pages and a JSON API.

    The pages / (upload) and /live (camera); the API /predict, /predict/batch, /metadata,
    /metrics, documented at /docs. A bundle without model.onnx gets one first, exported
    into the bundle as `ursa export --onnx` does (that step needs PyTorch; serving does
    not).
    """
    from ursa.cli.support import shown
    from ursa.core.bundle import ONNX_NAME, read_bundle
    from ursa.core.runtime import Predictor
    from ursa.serve.app import check_port, run
    from ursa.serve.settings import ServeSettings

    settings = ServeSettings.load(
        bundle=bundle, int8=int8, provider=provider, threads=threads, workers=workers, host=host
    )
    check_port(host, port, command="ursa serve")  # before anything loads
    if not int8 and ONNX_NAME not in read_bundle(bundle).members:
        add_onnx(console, bundle)
    Predictor(bundle, int8=int8, provider=provider, threads=1)  # fail here, not in a worker
    console.print(
        f"serving {shown(bundle)} on http://{shown(host)}:{port} (pages / and /live, API /docs)",
        soft_wrap=True,
    )
    run(settings, host=host, port=port)


def add_onnx(console: Console, bundle: Path) -> None:
    """Export BUNDLE's model.onnx into it (parity-checked, atomically), saying so: the step
    ``ursa export --onnx`` makes, so that ``ursa serve`` alone is enough."""
    from ursa.cli.support import export_report, shown
    from ursa.core.errors import BundleError

    try:
        import torch  # noqa: F401  (only to know whether the export can run here)
    except ImportError:
        raise BundleError(
            f"{bundle} has no model.onnx, and exporting one needs PyTorch, which is not "
            f"installed here: pip install 'ursa[train]', or run `ursa export {bundle} --onnx` "
            f"where it is and serve that bundle"
        ) from None
    from ursa.export.deploy import export_for_serving

    # The export rewrites the bundle (a temporary file beside it, then a rename): say now,
    # not after the export and its check, when that cannot be done.
    if not (os.access(bundle, os.W_OK) and os.access(bundle.parent, os.W_OK | os.X_OK)):
        raise BundleError(
            f"{bundle} has no model.onnx and cannot be rewritten here (no write permission): "
            f"copy the bundle where you can write and serve the copy, or run `ursa export "
            f"{bundle} --onnx` where you can"
        )

    console.print(
        f"{shown(bundle)} has no model.onnx: exporting it into the bundle first (once; the same "
        f"as `ursa export --onnx`)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    try:
        with console.status("exporting model.onnx and checking it against PyTorch"):
            result = export_for_serving(bundle, onnx=True)
    except OSError as error:  # permission, a read-only file system, a full disk
        raise BundleError(
            f"cannot add model.onnx to {bundle} ({error.strerror or error}): copy the bundle "
            f"where you can write and serve the copy"
        ) from None
    export_report(console, result)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``ursa`` command."""
    app.command("serve")(user_errors(serve))
