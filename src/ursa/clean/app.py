"""The cleaning server: create the app, open the session in ``lifespan``, include the routes.

Run it with ``ursa clean m.ursa DATA``, or with any ASGI server::

    URSA_CLEAN_BUNDLE=m.ursa URSA_CLEAN_DATA=bears uvicorn --factory ursa.clean.app:create_app
"""

from __future__ import annotations

import secrets
import threading
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ursa.clean.journal import ConflictError, UnknownImageError
from ursa.clean.routes import router
from ursa.clean.session import CleanSession
from ursa.clean.settings import CleanSettings
from ursa.errors import ImageError, UrsaError
from ursa.version import __version__

#: Sent with every answer: no framing (a page cannot trick the user into key presses
#: on this one), nothing loaded from anywhere but this server.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts())
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


def run(settings: CleanSettings, session: CleanSession, *, open_browser: bool) -> None:
    """Serve until interrupted; open the page in a browser first when asked and there is one."""
    import uvicorn

    if open_browser:
        url = f"http://{_url_host(settings.host)}:{settings.port}/"
        threading.Timer(1.0, webbrowser.open, [url]).start()
    app = create_app(settings, session)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="warning")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
