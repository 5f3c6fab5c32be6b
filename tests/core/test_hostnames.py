"""One Host-header parser for both servers: ``ursa serve`` and ``ursa clean`` answer alike."""

from __future__ import annotations

import asyncio

import pytest

from ursa.clean.guard import RequestGuard
from ursa.core.asgi import Message, Receive, Scope, Send
from ursa.core.hostnames import LOOPBACK_NAMES, host_name
from ursa.serve.guard import HostCheckMiddleware


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8100", "127.0.0.1"),
        ("LocalHost", "localhost"),
        (" localhost:80 ", "localhost"),
        ("[::1]:8100", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("my-box.local:8000", "my-box.local"),
        ("", None),
        ("[::1", None),
        ("[localhost]:80", None),  # brackets hold an IPv6 address, nothing else
        ("[::1]x", None),
        ("a:1:2", None),
        ("localhost:", None),
        ("localhost:123456", None),
        ("[::1]:123456", None),
        ("localhost:８１００", None),  # digits, but not ASCII ones
        ("localhost:8²", None),
        ("local host", None),
        ("-leading.dash", None),
        ("\u212aitchen.local", None),  # the Kelvin sign, which lower() makes a "k"
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _status(app: object, host: str) -> int:
    """The status ``app`` answers a GET with this Host header."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"host", host.encode("latin-1"))],
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8100",
        "[::1]:8100",
        "127.0.0.1",
        "localhost:",
        "localhost:8²",  # "²".isdigit(), and Latin-1 as header bytes are
        "[::1]:123456",
        "[localhost]:80",
        "evil.example",
        "[::1",
    ],
)
def test_serve_and_clean_answer_every_host_header_alike(host: str) -> None:
    serve = HostCheckMiddleware(_ok, names=list(LOOPBACK_NAMES))
    clean = RequestGuard(_ok, allowed_hosts=LOOPBACK_NAMES, token="t", max_body_bytes=100)
    expected = 200 if host_name(host) in LOOPBACK_NAMES else 400
    assert (_status(serve, host), _status(clean, host)) == (expected, expected)
