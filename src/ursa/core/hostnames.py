"""The names a local server answers to (its Host-header allow-list). Torch-free.

``ursa serve`` and ``ursa clean`` both refuse a request whose Host header names
anything else, which stops DNS rebinding: a web page that points its own domain at
127.0.0.1 cannot use the server.
"""

from __future__ import annotations

import socket

#: Names of this machine's loopback interface.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Listening addresses that mean "every address of this machine".
ANY_ADDRESS = ("0.0.0.0", "::", "")


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
