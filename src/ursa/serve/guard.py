"""What a browser needs to keep other sites away: a Host check and protective headers.

* :class:`HostCheckMiddleware` answers 400 to a request whose ``Host`` header is not a name
  this server answers to (``ServeSettings.host_names``). A page on ``evil.example`` that
  points its own name at 127.0.0.1 (DNS rebinding) sends ``Host: evil.example`` and is
  refused, so it cannot use the model or read its metadata.
* :class:`SecurityHeadersMiddleware` adds a Content-Security-Policy that allows this
  server's own scripts, styles and images only (no inline script, no CDN), forbids framing
  (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``) and content sniffing
  (``X-Content-Type-Options: nosniff``), on every answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ursa.core.asgi import ASGIApp, Receive, Scope, Send, refuse, sending_headers
from ursa.core.hostnames import host_name

#: The pages load /static/*.js and /static/style.css, show a chosen file through a blob:
#: URL, draw camera frames on a canvas and fetch /predict and /metadata; nothing else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class HostCheckMiddleware:
    """Answers 400 unless the Host header names one of ``names`` (``*`` allows any,
    ``*.example.com`` any name under example.com)."""

    def __init__(self, app: ASGIApp, names: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in names
        self.names = frozenset(name for name in names if not name.startswith("*"))
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        host = None if header is None else host_name(header)
        if host is None:
            return False
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        header = next((v.decode("latin-1") for k, v in headers if k == b"host"), None)
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        await refuse(
            send,
            400,
            f"Host {header!r} is not a name this server answers to; use one it listens on, or "
            f"add the name to URSA_ALLOWED_HOSTS (behind a proxy: the public name clients use)",
        )


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, sending_headers(send, SECURITY_HEADERS))
