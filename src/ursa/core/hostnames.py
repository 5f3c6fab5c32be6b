"""The names a local server answers to (its Host-header allow-list). Torch-free.

``ursa serve`` and ``ursa clean`` both refuse a request whose Host header names
anything else, which stops DNS rebinding: a web page that points its own domain at
127.0.0.1 cannot use the server.
"""

from __future__ import annotations

import ipaddress
import re
import socket

#: Names of this machine's loopback interface.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Listening addresses that mean "every address of this machine".
ANY_ADDRESS = ("0.0.0.0", "::", "")

_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")
_PORT = re.compile(r":[0-9]{1,5}")


def host_name(header: str) -> str | None:
    """The host a ``Host`` header names: lower case, without the port or IPv6's brackets;
    ``None`` when the value is not a host name or address with an optional port.

    ``"127.0.0.1:8100"`` → ``"127.0.0.1"``, ``"[::1]:8100"`` → ``"::1"``, ``"LocalHost"`` →
    ``"localhost"``; ``"[::1"``, ``"[nothing]"``, ``"a:1:2"``, ``"localhost:"``, a port of
    non-ASCII digits and ``""`` → ``None``.
    """
    value = header.strip()
    if not value.isascii():  # str.lower() would turn some other letters into ASCII ones
        return None
    value = value.lower()
    if value.startswith("["):
        address, bracket, port = value[1:].partition("]")
        if not bracket:
            return None
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        name = address
    else:
        name, colon, digits = value.partition(":")
        port = colon + digits
        if not _NAME.fullmatch(name):
            return None
    if port and not _PORT.fullmatch(port):
        return None
    return name


def own_names() -> set[str]:
    """This machine's host name, full name and the addresses they resolve to."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            _, aliases, addresses = socket.gethostbyname_ex(name)
        except OSError:  # a name the resolver does not know
            continue
        names.update(aliases, addresses)
    return {name for name in names if name}
