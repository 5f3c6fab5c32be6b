"""``ursa serve``: the inference server (upload page, live page, JSON API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.support import console, user_errors


def serve(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle holding model.onnx.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", envvar="URSA_WORKERS")] = 1,
    int8: Annotated[
        bool, typer.Option("--int8", help="Serve model.int8.onnx.", envvar="URSA_INT8")
    ] = False,
    provider: Annotated[
        str, typer.Option(help="cpu, cuda or tensorrt.", envvar="URSA_PROVIDER")
    ] = "cpu",
    threads: Annotated[
        int | None, typer.Option(help="Model threads per process.", envvar="URSA_THREADS")
    ] = None,
) -> None:
    """Serve BUNDLE over HTTP: /predict, /predict/batch, /metadata, /metrics, pages / and /live."""
    from ursa.core.runtime import Predictor
    from ursa.serve.app import run
    from ursa.serve.settings import ServeSettings

    settings = ServeSettings.load(
        bundle=bundle, int8=int8, provider=provider, threads=threads, workers=workers, host=host
    )
    Predictor(bundle, int8=int8, provider=provider, threads=1)  # fail here, not in a worker
    from ursa.cli.support import shown

    console.print(
        f"serving {shown(bundle)} on http://{shown(host)}:{port} (pages / and /live, API /docs)"
    )
    run(settings, host=host, port=port)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``ursa`` command."""
    app.command("serve")(user_errors(serve))
