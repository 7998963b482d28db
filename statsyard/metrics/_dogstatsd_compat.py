"""The one place the shipper reaches into the datadog client.

:class:`datadog.DogStatsd` formats gauges and packs them into datagrams, which
is what the shipper wants from it, but it has no public way to take a socket
from its user, and it hides send errors (it counts them in its telemetry and
drops, or closes and reopens, the socket). The shipper needs every failure
reported, so it gives the client a real UDP socket of its own whose ``send``
reports success and failure and never raises: :func:`attach` sets the
client's ``socket`` attribute, which the client then uses for every
datagram.

``tests/test_dogstatsd_compat.py`` fails loudly when a datadog release stops
sending through that attribute, and ``pyproject.toml`` bounds datadog to the
versions tested here.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client imports requests: only when shipping starts
    from datadog.dogstatsd.base import DogStatsd

__all__ = ["CountingSocket", "attach"]


class CountingSocket(socket.socket):
    """A UDP socket whose ``send`` reports each datagram and never raises.

    A failure goes to ``on_error`` with a short kind (``econnrefused``, ...)
    and the datagram is dropped (UDP semantics), so the client neither hides
    the error nor closes and replaces the socket.
    """

    def __init__(
        self,
        family: int,
        kind: int,
        proto: int,
        *,
        on_sent: Callable[[bytes], None],
        on_error: Callable[[str, OSError], None],
    ) -> None:
        super().__init__(family, kind, proto)
        self._on_sent = on_sent
        self._on_error = on_error

    def send(self, data: bytes, flags: int = 0, /) -> int:  # type: ignore[override]
        """Send one datagram; report it, or the error, instead of raising."""
        try:
            sent = super().send(data, flags)
        except OSError as error:
            kind = errno.errorcode.get(error.errno or 0, type(error).__name__).lower()
            self._on_error(kind, error)
            return len(data)
        self._on_sent(data)
        return sent


def attach(statsd: DogStatsd, sock: CountingSocket) -> None:
    """Make ``statsd`` send every datagram through ``sock``."""
    statsd.socket = sock
