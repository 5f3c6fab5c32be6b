"""The ASGI pieces both servers' guards share: body reading and replay, refusals, headers."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence

import pytest

from ursa.clean.guard import SECURITY_HEADERS as CLEAN_HEADERS
from ursa.clean.guard import RequestGuard
from ursa.core.asgi import (
    REPLAY_CHUNK,
    BodyTooLarge,
    ClientClosed,
    Message,
    Receive,
    Scope,
    Send,
    receive_body,
    replay_body,
)
from ursa.serve.guard import SecurityHeadersMiddleware
from ursa.serve.limits import BodyLimitMiddleware


def _client(messages: Sequence[Message]) -> Receive:
    """A ``receive`` that gives ``messages``, then waits as a silent client does."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return receive


def _chunks(*parts: bytes) -> list[Message]:
    return [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]


class _Recorder:
    """An app that reads its whole body and answers 200 with it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.messages: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            self.messages.append(len(message.get("body", b"")))
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def _run(app: object, scope: Scope, receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        await asyncio.wait_for(app(scope, receive, send), 5)  # type: ignore[operator]

    asyncio.run(call())
    return sent


def _scope(headers: Sequence[tuple[bytes, bytes]], method: str = "POST") -> Scope:
    return {"type": "http", "method": method, "path": "/x", "headers": list(headers)}


def test_a_body_is_read_up_to_the_limit_and_replayed_in_chunks() -> None:
    body = bytes(range(256)) * (REPLAY_CHUNK // 256 * 2 + 7)  # two chunks and a bit
    spool = io.BytesIO()
    size = asyncio.run(receive_body(spool, _client(_chunks(body[:1000], body[1000:])), len(body)))
    assert size == len(body)
    spool.seek(0)
    app = _Recorder()
    replay = replay_body(spool, size, _client([{"type": "http.disconnect"}]))
    _run(app, _scope([]), replay)
    assert app.bodies == [body]
    assert app.messages == [REPLAY_CHUNK, REPLAY_CHUNK, len(body) - 2 * REPLAY_CHUNK]


def test_reading_stops_past_the_limit_and_when_the_client_leaves() -> None:
    with pytest.raises(BodyTooLarge):
        asyncio.run(receive_body(io.BytesIO(), _client(_chunks(b"x" * 60, b"x" * 60)), 100))
    with pytest.raises(ClientClosed) as closed:
        leaving = [*_chunks(b"x" * 10, b"y")[:1], {"type": "http.disconnect"}]
        asyncio.run(receive_body(io.BytesIO(), _client(leaving), 100))
    assert closed.value.args == (10,)


#: A chunked POST that passes the cleaner's host and token checks.
CHUNKED = [(b"host", b"localhost"), (b"x-ursa-token", b"t"), (b"transfer-encoding", b"chunked")]


def _body_guard(server: str, app: _Recorder, limit: int) -> object:
    """The middleware that reads request bodies: ``ursa serve``'s or ``ursa clean``'s."""
    if server == "serve":
        return BodyLimitMiddleware(app, limit=limit, batch_limit=limit, timeout=5)
    return RequestGuard(app, allowed_hosts=["localhost"], token="t", max_body_bytes=limit)


@pytest.mark.parametrize("server", ["serve", "clean"])
def test_a_client_that_leaves_mid_body_reaches_no_route_on_either_server(server: str) -> None:
    """Both guards read a body with the same code: half a body never reaches the app."""
    app = _Recorder()
    leaving = [_chunks(b'{"label": ', b"")[0], {"type": "http.disconnect"}]
    sent = _run(_body_guard(server, app, 1000), _scope(CHUNKED), _client(leaving))
    assert (app.bodies, sent) == ([], [])


@pytest.mark.parametrize("server", ["serve", "clean"])
def test_both_servers_refuse_an_oversized_chunked_body_alike(server: str) -> None:
    app = _Recorder()
    chunks = _chunks(b"x" * 80, b"x" * 80, b"")
    sent = _run(_body_guard(server, app, 100), _scope(CHUNKED), _client(chunks))
    start = sent[0]
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert "limit" in json.loads(sent[1]["body"])["detail"]
    assert app.bodies == []


async def _framable(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that sets its own, weaker, framing header."""
    headers = [(b"x-frame-options", b"SAMEORIGIN"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.mark.parametrize("server", ["serve", "clean"])
def test_the_guards_security_headers_win_over_the_apps_own(server: str) -> None:
    guard: object
    if server == "serve":
        guard = SecurityHeadersMiddleware(_framable)
    else:
        guard = RequestGuard(
            _framable, allowed_hosts=["localhost"], token="t", max_body_bytes=10,
            headers=CLEAN_HEADERS,
        )  # fmt: skip
    sent = _run(guard, _scope([(b"host", b"localhost")], method="GET"), _client(_chunks(b"")))
    framing = [value for name, value in sent[0]["headers"] if name == b"x-frame-options"]
    assert framing == [b"DENY"]
    assert (b"content-type", b"text/plain") in sent[0]["headers"]
