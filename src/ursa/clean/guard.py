"""What every request to the cleaning server must pass, judged on its headers alone.

FastAPI reads and parses a request's body before it runs the route's dependencies,
so a check made there comes after the whole body has been read: an unauthenticated
300 MB POST would be read in full before it was refused. :class:`RequestGuard` is a
plain ASGI middleware that looks at the headers first:

* the ``Host`` header must name this server (a DNS-rebinding page names its own domain);
  ``[::1]:8100``, IPv6 with brackets, is understood;
* a request that can change something (anything but GET, HEAD and OPTIONS) must carry
  this run's token;
* a body may not be longer than ``max_body_bytes`` (``Content-Length`` is checked before
  a byte is read; a chunked body is read up to the limit and no further).

A refusal is answered at once with ``Connection: close``, so the server does not read
(not even to throw away) the rest of what the client sends. Every answer, refusals
included, carries :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Collection, Mapping

from starlette.datastructures import Headers

from ursa.core.asgi import (
    ASGIApp,
    BodyTooLarge,
    ClientClosed,
    Receive,
    Scope,
    Send,
    encoded_headers,
    receive_body,
    refuse,
    replay_body,
    sending_headers,
)
from ursa.core.hostnames import host_name

TOKEN_HEADER = "X-Ursa-Token"
#: Methods that change nothing: they need no token (the routes for them read no body).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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


def token_problem(sent: str | None, expected: str) -> str | None:
    """Why ``sent`` is not this run's token (a message saying what to do), or ``None``."""
    if not sent:
        return (
            f"missing {TOKEN_HEADER} header: changes are taken only from the page this server "
            f"serves; open it (or reload it) and decide there"
        )
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return (
            "wrong token: this page was served by an earlier run of ursa clean (or the request "
            "did not come from it); reload the page"
        )
    return None


class RequestGuard:
    """The checks of the module docstring, around the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Collection[str],
        token: str,
        max_body_bytes: int,
        headers: Mapping[str, str] = SECURITY_HEADERS,
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(name.lower() for name in allowed_hosts)
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.headers = encoded_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = sending_headers(send, self.headers)
        headers = Headers(scope=scope)
        status, problem = self._problem(scope["method"], headers)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if problem is None and chunked and "content-length" not in headers:
            body = io.BytesIO()
            try:
                size = await receive_body(body, receive, self.max_body_bytes)
            except BodyTooLarge:
                status, problem = 413, self._too_long()
            except ClientClosed:
                return  # nobody to answer
            else:
                body.seek(0)
                receive = replay_body(body, size, receive)
        if problem is not None:
            await refuse(send, status, problem)
            return
        await self.app(scope, receive, send)

    def _problem(self, method: str, headers: Headers) -> tuple[int, str | None]:
        """``(status, why)`` for a request refused on its headers; ``(0, None)`` otherwise."""
        name = host_name(headers.get("host", ""))
        if name is None or name not in self.allowed_hosts:
            return 400, (
                f"Invalid host header {headers.get('host', '')[:100]!r}: this server answers "
                f"only to {', '.join(sorted(self.allowed_hosts))}; open the address ursa clean "
                f"printed"
            )
        if method not in SAFE_METHODS:
            problem = token_problem(headers.get(TOKEN_HEADER), self.token)
            if problem is not None:
                return 403, problem
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return 400, f"Content-Length {length[:40]!r} is not a number of bytes"
            if int(length) > self.max_body_bytes:
                return 413, self._too_long(int(length))
        return 0, None

    def _too_long(self, length: int | None = None) -> str:
        size = "a chunked body" if length is None else f"a body of {length} bytes"
        return (
            f"{size} is more than this server reads ({self.max_body_bytes} bytes; a decision "
            f"takes a few dozen); set URSA_CLEAN_MAX_BODY_BYTES to change the limit"
        )
