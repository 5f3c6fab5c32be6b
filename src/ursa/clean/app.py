"""The cleaning server: create the app, open the session in ``lifespan``, include the routes.

Run it with ``ursa clean m.ursa DATA``, or with any ASGI server::

    URSA_CLEAN_BUNDLE=m.ursa URSA_CLEAN_DATA=bears uvicorn --factory ursa.clean.app:create_app
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import threading
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from ursa.clean.guard import SECURITY_HEADERS, RequestGuard
from ursa.clean.journal import ConflictError, UnknownImageError
from ursa.clean.routes import router
from ursa.clean.session import CleanSession
from ursa.clean.settings import CleanSettings
from ursa.core.errors import ImageError, UrsaError
from ursa.core.version import __version__


def create_app(
    settings: CleanSettings | None = None, session: CleanSession | None = None
) -> FastAPI:
    """The FastAPI app for ``settings`` (default: from ``URSA_CLEAN_*`` environment variables).

    ``session``, when given, is used instead of opening one (the CLI opens it first, so
    that a bad bundle or folder is reported before the server starts); the app closes it.
    """
    settings = settings or CleanSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = session or CleanSession.open(
            settings.bundle, settings.data, fault=settings.fault,
            thumbnail_px=settings.thumbnail_px,
        )  # fmt: skip
        app.state.session = opened
        try:
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="ursa clean",
        version=__version__,
        summary="Review a dataset by loss: relabel, delete or keep each image, undoably.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token = secrets.token_urlsafe(32)  # per server run; embedded in the page
    app.include_router(router)
    static = resources.files("ursa.clean").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # Host, token and body size are checked on the headers, before the body is read.
    app.add_middleware(
        RequestGuard, allowed_hosts=settings.allowed_hosts(), token=app.state.token,
        max_body_bytes=settings.max_body_bytes, headers=SECURITY_HEADERS,
    )  # fmt: skip
    _error_answers(app)
    return app


def _error_answers(app: FastAPI) -> None:
    """Errors a person can cause become 4xx answers carrying the message."""

    def answer(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def handler(request: Request, error: Exception) -> Response:
            return JSONResponse({"detail": str(error)}, status_code=status)

        return handler

    app.add_exception_handler(UnknownImageError, answer(404))
    app.add_exception_handler(ConflictError, answer(409))
    app.add_exception_handler(ImageError, answer(422))
    app.add_exception_handler(UrsaError, answer(400))

    async def busy(request: Request, error: Exception) -> Response:
        return JSONResponse(
            {"detail": f"the dataset's ursa.sqlite is busy ({error}); try again in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    app.add_exception_handler(sqlite3.OperationalError, busy)


def page_url(settings: CleanSettings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"


def check_port(settings: CleanSettings) -> None:
    """Fail with a message to act on, before anything starts, when the port is taken
    (the check ``ursa serve`` makes too: :func:`ursa.serve.app.check_port`)."""
    from ursa.serve.app import check_port as check

    check(settings.host, settings.port, command="ursa clean")


def has_display() -> bool:
    """A graphical browser can open (a text-mode one would take over the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(settings: CleanSettings, session: CleanSession, *, open_browser: bool) -> None:
    """Serve until interrupted; open the page in a browser first when asked and there is one."""
    import uvicorn

    if open_browser and has_display():
        threading.Timer(1.0, webbrowser.open, [page_url(settings)]).start()
    app = create_app(settings, session)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="warning")
