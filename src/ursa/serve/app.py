"""The inference server: create the app, load the model in ``lifespan``, include the routes.

Run it with ``ursa serve m.ursa``, or with any ASGI server::

    URSA_BUNDLE=m.ursa uvicorn --factory ursa.serve.app:create_app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ursa.serve.limits import BodyLimitMiddleware
from ursa.serve.metrics import Metrics, MetricsMiddleware
from ursa.serve.routes import Service, router
from ursa.serve.settings import ServeSettings
from ursa.version import __version__


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: from ``URSA_*`` environment variables)."""
    settings = settings or ServeSettings()  # type: ignore[call-arg]
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.create(settings, metrics)
        service.batcher.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.batcher.stop()
            service.decoders.shutdown(wait=False)

    app = FastAPI(
        title="ursa",
        version=__version__,
        summary="Image classification with a model exported by ursa (ONNX Runtime).",
        lifespan=lifespan,
    )
    app.include_router(router)
    static = resources.files("ursa.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    # Added last = outermost: metrics see every answer, including the 413s below.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted; several ``workers`` are separate processes, each with a model."""
    import uvicorn

    if settings.workers == 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
        return
    # Worker processes rebuild the settings from the environment.
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"URSA_{name.upper()}"] = str(value)
    uvicorn.run(
        "ursa.serve.app:create_app",
        factory=True,
        workers=settings.workers,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
    )
