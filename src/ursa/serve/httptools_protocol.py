"""uvicorn's httptools protocol with :class:`ursa.serve.connections.ClientLimits`.

A module of its own, imported only when httptools is used (it imports httptools), so that
the class has a name pickling can find: ``ursa serve`` with several workers pickles it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ursa.serve.connections import ClientLimits


class ClientLimitedHttpToolsProtocol(ClientLimits, HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ClientLimits`."""
