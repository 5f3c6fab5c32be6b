"""The inference server: create the app, load the model in ``lifespan``, include the routes.

Run it with ``ursa serve m.ursa``, or with any ASGI server::

    URSA_BUNDLE=m.ursa uvicorn --factory ursa.serve.app:create_app

Under another server, set ``URSA_HOST`` to the address it listens on (the Host check
accepts it) and use that server's own connection limits: the per-client limit and the
first-request deadline are ``ursa serve``'s (:mod:`ursa.serve.connections`).
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ursa.core.errors import ConfigError, UrsaError
from ursa.core.version import __version__
from ursa.serve.guard import HostCheckMiddleware, SecurityHeadersMiddleware
from ursa.serve.limits import BodyLimitMiddleware, return_freed_memory
from ursa.serve.metrics import ASGIApp, Metrics, MetricsMiddleware
from ursa.serve.routes import RawPredictMiddleware, Service, router
from ursa.serve.settings import ServeSettings


class _App(FastAPI):
    """FastAPI with :class:`SecurityHeadersMiddleware` outside everything, Starlette's own
    500 answer (its outermost middleware) included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeadersMiddleware(super().build_middleware_stack())


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: from ``URSA_*`` environment variables)."""
    settings = settings or ServeSettings.load()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        return_freed_memory()  # a large upload must not leave the server larger for good
        service = Service.create(settings, metrics)
        service.batcher.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.batcher.stop()
            service.decoders.shutdown(wait=False)

    app = _App(
        title="ursa",
        version=__version__,
        summary="Image classification with a model exported by ursa (ONNX Runtime).",
        lifespan=lifespan,
        # The stock /docs and /redoc load their scripts from a CDN; routes.api_page serves
        # a page of this package's own instead.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(router)
    static = resources.files("ursa.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    # Added last = outermost; outside them all, the security headers (_App). From the outside
    # in: metrics see every answer; the Host check refuses foreign names before any body is
    # read; bodies arrive whole (or get 408/413) before a route runs; innermost, raw-body
    # POST /predict is answered without FastAPI's routing.
    app.add_middleware(RawPredictMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        batch_limit=settings.max_batch_body_bytes,
        timeout=settings.body_timeout,
    )
    app.add_middleware(HostCheckMiddleware, names=settings.host_names())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def check_port(host: str, port: int, *, command: str) -> None:
    """Fail with a line to act on, before anything loads, when ``command`` (``ursa serve``,
    ``ursa clean``) could not listen on ``host:port``: the port taken or not allowed (pass
    another ``--port``, one found free is named), or the address not this machine's
    (pass another ``--host``)."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: use a port from 1 to 65535")
    place = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        _bind(host, port)
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            free = next((p for p in range(port + 1, min(port + 50, 65536)) if _free(host, p)), 0)
            hint = f"pass --port with a free port{f', e.g. --port {free}' if free else ''}"
            raise UrsaError(
                f"cannot listen on {place} ({reason}): is another {command} or another server "
                f"running there? {hint[0].upper()}{hint[1:]}"
            ) from None
        raise UrsaError(
            f"cannot listen on {place} ({reason}): pass --host with an address of this "
            f"machine (127.0.0.1 for this machine only, 0.0.0.0 for every address)"
        ) from None


def _bind(host: str, port: int) -> None:
    """Bind and release ``host:port`` as the server will (SO_REUSEADDR, as uvicorn sets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _free(host: str, port: int) -> bool:
    try:
        _bind(host, port)
    except OSError:
        return False
    return True


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted; several ``workers`` are separate processes, each with a model.

    Connections are uvicorn's (httptools' parser, or h11's: ``settings.http``), limited per
    client address and given a deadline for their first request
    (:class:`ursa.serve.connections.ClientLimits`).
    """
    import uvicorn

    from ursa.serve.connections import protocol_class

    settings = settings.model_copy(update={"host": host})
    protocol = functools.partial(
        protocol_class(settings.http),
        per_client=settings.max_connections_per_client,
        first_request_timeout=settings.body_timeout,
    )
    several = settings.workers > 1
    if several:  # worker processes rebuild the settings from the environment
        for name, value in settings.model_dump(exclude_none=True).items():
            text = ",".join(value) if isinstance(value, list) else str(value)
            os.environ[f"URSA_{name.upper()}"] = text
    uvicorn.run(
        "ursa.serve.app:create_app" if several else create_app(settings),
        factory=several,
        workers=settings.workers if several else None,
        host=host,
        port=port,
        http=protocol,  # type: ignore[arg-type]  # a partial of a uvicorn protocol subclass
        access_log=False,
        log_level="warning",
    )
