"""The ASGI pieces both local servers (``ursa serve``, ``ursa clean``) build their guards from.

Plain ASGI, no framework: the types, a body read up to a limit, a ``receive`` that
replays a body already read, an answer that refuses a request and closes the
connection, and a ``send`` that puts headers on every answer. Torch-free and
dependency-free, so the serving install and the cleaner share one copy.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import IO, Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Size of the chunks a body read beforehand is handed to the app in.
REPLAY_CHUNK = 1024 * 1024


class BodyTooLarge(Exception):
    """The body passed the limit; what was read so far is dropped."""


class ClientClosed(Exception):
    """The client went away before its body was all there (``args[0]``: bytes received)."""


async def receive_body(into: IO[bytes], receive: Receive, limit: int) -> int:
    """Every body message of the request into ``into``; the number of bytes.

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes came (the rest is
    never read) and :class:`ClientClosed` when the client hangs up first.
    """
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientClosed(received)
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge
        into.write(chunk)  # memory, or the page cache: no wait worth a thread
        if not message.get("more_body", False):
            return received


def replay_body(body: IO[bytes], size: int, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the ``size`` bytes read into ``body`` (from where
    it stands), in chunks of :data:`REPLAY_CHUNK`, then the connection's own messages
    (the disconnect at the end)."""
    remaining = size
    done = False

    async def replay() -> Message:
        nonlocal remaining, done
        if done:
            return await receive()
        chunk = body.read(min(REPLAY_CHUNK, remaining))
        remaining -= len(chunk)
        done = remaining <= 0 or not chunk
        return {"type": "http.request", "body": chunk, "more_body": not done}

    return replay


async def refuse(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": detail}`` with ``status`` and close the connection: whatever the
    client still sends is never read (neither here nor, on a kept-alive connection, by
    the server, which would read a declared body to its end however slowly it came)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def encoded_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``{"Name": "value"}`` as ASGI header pairs (names lower case)."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


def sending_headers(send: Send, headers: Sequence[tuple[bytes, bytes]]) -> Send:
    """A ``send`` that puts ``headers`` (lower-case names) on every answer, in place of any
    header of the same name the app set: the guard's values are the ones that count."""
    names = {name for name, _ in headers}

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": [*kept, *headers]}
        await send(message)

    return send_with_headers
