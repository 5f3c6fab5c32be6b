"""Connection limits that an ASGI app cannot see: uvicorn's HTTP/1.1 protocol, bounded.

:class:`ClientLimitedProtocol` is uvicorn's ``H11Protocol`` with two additions, used by
``ursa serve`` (:func:`ursa.serve.app.run`):

* one client address (an IPv6 client: its /64 network, which one host usually has whole)
  holds at most ``per_client`` open connections; a further one is answered 503 at once and
  closed, so one client cannot take every file descriptor of the server. Up to
  ``per_client`` refused connections per client are kept for at most
  :data:`REFUSED_LINGER` seconds, until the request the client sent has been read (closing
  a socket with unread data resets it, and the client may never see the 503); any further
  one is closed at once. A client thus holds at most twice ``per_client`` descriptors;
* a connection that has not sent a complete request head within ``first_request_timeout``
  seconds of opening is closed (a socket opened and left silent holds nothing for long).

Slow bodies are the app's part (``ursa.serve.limits``); idle keep-alive connections are
uvicorn's own (``timeout_keep_alive``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from ursa.core.errors import ConfigError
from ursa.serve.guard import SECURITY_HEADERS
from ursa.serve.settings import HTTPTOOLS_MISSING, HttpParser, httptools_installed

log = logging.getLogger(__name__)

#: Seconds between two log lines about refused connections.
WARN_EVERY = 60.0
#: IPv6 clients are counted by network of this prefix length.
IPV6_PREFIX = 64
#: Longest a refused connection is kept open (see the module doc).
REFUSED_LINGER = 0.5


def client_key(address: str) -> str:
    """What connections are counted by: an IPv4 address, or an IPv6 address's /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # a Unix socket path or a name: counted as it is
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


class ClientLimits:
    """A per-address connection limit and a deadline for the first request (see the module
    doc), for a uvicorn HTTP protocol: it comes first among the bases, the protocol after."""

    _last_warning: ClassVar[float] = float("-inf")

    if TYPE_CHECKING:  # what the uvicorn protocol it is mixed into provides
        connections: set[Any]
        client: tuple[str, int] | None
        transport: asyncio.Transport
        loop: asyncio.AbstractEventLoop
        cycle: Any

    def __init__(
        self, *args: Any, per_client: int, first_request_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.per_client = per_client
        self.first_request_timeout = first_request_timeout
        self.refused = False
        self.key: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.key = client_key(self.client[0]) if self.client else None
        if self.per_client and self.key is not None and self._held_by(self.key) > self.per_client:
            self._refuse(self.key)
            return
        self._timer = self.loop.call_later(self.first_request_timeout, self._no_request_yet)

    def _held_by(self, key: str) -> int:
        """Connections from the client ``key`` this server holds, this one included."""
        return sum(1 for other in self._same_client(key) if not other.refused)

    def _same_client(self, key: str) -> list[ClientLimits]:
        return [
            other
            for other in self.connections
            if isinstance(other, ClientLimits) and other.key == key
        ]

    def _write_refusal(self, status: str, detail: str, extra: str = "") -> None:
        """Write a JSON ``{"detail": ...}`` answer that closes the connection, with the
        security headers every other answer has; the caller closes the transport."""
        body = json.dumps({"detail": detail}).encode()
        protective = "".join(
            f"{name.decode()}: {value.decode()}\r\n" for name, value in SECURITY_HEADERS
        )
        head = (
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}connection: close\r\n{protective}\r\n"
        )
        self.transport.write(head.encode() + body)

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read (a malformed line or header, or with httptools
        a method it does not know): 400 with the security headers, then closed."""
        self._write_refusal("400 Bad Request", f"malformed HTTP request: {msg}")
        self.transport.close()

    def _refuse(self, address: str) -> None:
        self.refused = True
        self._write_refusal(
            "503 Service Unavailable",
            f"{address} already holds {self.per_client} connections to this server "
            "(URSA_MAX_CONNECTIONS_PER_CLIENT); close some, or reuse them",
            "retry-after: 1\r\n",
        )
        lingering = sum(
            1
            for other in self._same_client(address)
            if other.refused and other is not self and not other.transport.is_closing()
        )
        if lingering < self.per_client and self.transport.can_write_eof():
            # Kept until the client's request is read (data_received), at most a moment.
            self.transport.write_eof()
            linger = min(REFUSED_LINGER, self.first_request_timeout)
            self._timer = self.loop.call_later(linger, self.transport.close)
        else:
            self.transport.close()  # once the 503 is written
        now = time.monotonic()
        if now - ClientLimits._last_warning >= WARN_EVERY:
            ClientLimits._last_warning = now
            log.warning(
                "refusing connections from %s: it holds %d already "
                "(URSA_MAX_CONNECTIONS_PER_CLIENT; logged at most once a minute)",
                address,
                self.per_client,
            )

    def data_received(self, data: bytes) -> None:
        if self.refused:
            # Answered already: the request is dropped. The socket closes when its linger
            # ends (at most REFUSED_LINGER); closing now, with the client's bytes unread,
            # would reset it before the client read its 503.
            return
        super().data_received(data)  # type: ignore[misc]

    def _no_request_yet(self) -> None:
        self._timer = None
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)  # type: ignore[misc]


class ClientLimitedProtocol(ClientLimits, H11Protocol):
    """uvicorn's h11 protocol with :class:`ClientLimits`."""


@functools.cache
def protocol_class(parser: HttpParser = "auto") -> type[ClientLimits]:
    """The limited protocol for ``parser``: httptools' when asked for, or for ``auto`` when
    it is installed; h11's otherwise. Asking for httptools without it is a
    :class:`ConfigError` naming the install."""
    if parser == "h11" or (parser == "auto" and not httptools_installed()):
        return ClientLimitedProtocol
    if not httptools_installed():
        raise ConfigError(f"URSA_HTTP=httptools: {HTTPTOOLS_MISSING}")
    from ursa.serve.httptools_protocol import ClientLimitedHttpToolsProtocol

    return ClientLimitedHttpToolsProtocol
