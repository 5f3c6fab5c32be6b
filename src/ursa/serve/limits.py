"""A request-body size limit enforced while the body streams in (413, never a full read)."""

from __future__ import annotations

import json

from ursa.serve.metrics import ASGIApp, Message, Receive, Scope, Send

#: Bodies up to this size are read and dropped before the 413; larger ones are cut off.
DRAIN_LIMIT = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answers 413 when Content-Length, or the bytes actually received, exceed ``limit``."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(send, 400, "Content-Length is not a number")
                    return
                if declared > self.limit:
                    await self._drain(receive, declared)
                    await self._reply(send, 413, self._message())
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._drain(receive, received)
                await self._reply(send, 413, self._message())

    @staticmethod
    async def _drain(receive: Receive, size: int) -> None:
        """Read and drop the rest of a moderately oversized body, so that ordinary clients,
        which send the whole body before reading, see the 413 instead of a reset connection."""
        if size > DRAIN_LIMIT:
            return
        drained = 0
        while drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            drained += len(message.get("body", b""))

    def _message(self) -> str:
        return (
            f"request body over the limit of {self.limit:,} bytes; send a smaller image "
            f"(or raise URSA_MAX_BODY_BYTES)"
        )

    @staticmethod
    async def _reply(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
