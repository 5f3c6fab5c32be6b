"""The server's resource limits: request bodies, and the memory that decoding takes.

:class:`BodyLimitMiddleware` receives every request body itself and only then calls the
app, so a route (and its admission slot, see ``ursa.serve.batching.Admission``) never
waits on a slow client:

* over the size limit (``Content-Length``, or the bytes actually received): 413, never a
  full read (``max_body_bytes``; ``max_batch_body_bytes`` for ``POST /predict/batch``);
* not all there ``body_timeout`` seconds after the headers: 408;
* every such answer (400, 408, 413) closes the connection: the rest of the body is never
  read, by this middleware or by uvicorn (which, on a kept-alive connection, would read and
  drop a declared body to its end however slowly it came);
* the client hangs up half-way: one log line and no answer (``/metrics`` counts it as
  status 499, "client closed request");
* held in a spooled file while it arrives: the first :data:`SPOOL_BYTES` in memory, the rest
  in an unlinked temporary file, so a hundred half-sent 8 MB forms cost disk, not memory.

:class:`DecodeBudget` bounds the decoded bytes of the images being decoded at once (the
bound on one image is ``max_decoded_bytes``, checked from its header by the predictor), and
:func:`return_freed_memory` makes the memory of a large decode go back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import tempfile

from ursa.core.asgi import (
    ASGIApp,
    BodyTooLarge,
    ClientClosed,
    Receive,
    Scope,
    Send,
    receive_body,
    refuse,
    replay_body,
)

log = logging.getLogger(__name__)

#: Bodies up to this size are read and dropped (for at most ``timeout``) before the 413, so
#: that clients which send the whole body before reading see it; larger ones are cut off.
DRAIN_LIMIT = 64 * 1024 * 1024
#: Body bytes held in memory per request while it arrives; the rest goes to a temporary file.
SPOOL_BYTES = 256 * 1024
#: The path whose bodies get the batch limit.
BATCH_PATH = "/predict/batch"
#: Allocations at least this large get pages of their own from the system (glibc mmap),
#: returned to it when freed.
MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


class BodyLimitMiddleware:
    """Reads each request body whole (see the module doc), then calls the app with it."""

    def __init__(self, app: ASGIApp, *, limit: int, batch_limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.batch_limit = batch_limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        batch = scope.get("path") == BATCH_PATH
        limit = self.batch_limit if batch else self.limit
        declared = _content_length(scope)
        if declared == -1:
            await refuse(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await self._drain(receive, declared)
            await refuse(send, 413, _too_large(limit, batch))
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            try:
                async with asyncio.timeout(self.timeout):
                    received = await receive_body(spool, receive, limit)
            except TimeoutError:
                detail = (
                    f"the request body did not arrive within {self.timeout:g} s "
                    f"(URSA_BODY_TIMEOUT); send it faster, or raise the limit for slow links"
                )
                await refuse(send, 408, detail)
                return
            except BodyTooLarge:
                await self._drain(receive, limit)
                await refuse(send, 413, _too_large(limit, batch))
                return
            except ClientClosed as closed:
                client = (scope.get("client") or ("?",))[0]
                log.warning(
                    "%s %s: the client %s closed the connection after %s of %s body bytes",
                    scope.get("method"), scope.get("path"), client, f"{closed.args[0]:,}",
                    "?" if declared is None else f"{declared:,}",
                )  # fmt: skip
                return
            spool.seek(0)
            await self.app(scope, replay_body(spool, received, receive), send)

    async def _drain(self, receive: Receive, size: int) -> None:
        """Read and drop the rest of a moderately oversized body, so that ordinary clients,
        which send the whole body before reading, see the 413 instead of a reset connection."""
        if size > DRAIN_LIMIT:
            return
        drained = 0
        try:
            async with asyncio.timeout(self.timeout):
                while drained <= DRAIN_LIMIT:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    drained += len(message.get("body", b""))
        except TimeoutError:
            return


def return_freed_memory() -> bool:
    """Make large blocks go back to the system when freed (glibc only; True when set).

    glibc raises its mmap threshold each time a large block is freed, up to 32 MB, so
    after one big upload the next ones come from the heap, which keeps its pages: a
    single 80 MB decode left the server 120 MB larger for good. A fixed threshold keeps
    every decoded picture over :data:`MMAP_THRESHOLD` in pages of its own, which are
    returned as soon as the picture is freed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when there is none, -1 when it is not a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def _too_large(limit: int, batch: bool) -> str:
    setting = "URSA_MAX_BATCH_BODY_BYTES" if batch else "URSA_MAX_BODY_BYTES"
    what = "send fewer or smaller images per form" if batch else "send a smaller image"
    return f"request body over the limit of {limit:,} bytes; {what} (or raise {setting})"
