"""The listener's TCP connections, kept in order of their last activity.

The order answers the two questions bounded resources ask: which connections
have been silent longer than ``idle_timeout`` (the front of the table), and
which one to close to make room for a new client (the first at the front).
A connection whose points wait for the queue is busy, not idle: it is never
closed for silence nor evicted, and its clock restarts when it is read again.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statsyard.datapoint import Row
    from statsyard.graphite.protocol import LineStream

__all__ = ["Connection", "ConnectionTable"]


class Connection:
    """One TCP client: its socket, its line stream and the points not yet pushed."""

    __slots__ = (
        "eof",
        "last_active",
        "peer",
        "pending",
        "reading",
        "sock",
        "stream",
        "waiting",
    )

    def __init__(
        self, sock: socket.socket, peer: str, stream: LineStream, now: float
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.stream = stream
        self.pending: list[Row] = []
        self.eof = False
        self.reading = True
        """Registered with the selector (not while its points wait)."""
        self.waiting = False
        """In the queue of connections whose points wait for the next push."""
        self.last_active = now
        """Monotonic seconds of its last data (or of its acceptance)."""


class ConnectionTable:
    """The open connections by socket, the longest idle first."""

    def __init__(self) -> None:
        self._by_sock: OrderedDict[socket.socket, Connection] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_sock)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_sock.values()))

    def add(self, connection: Connection) -> None:
        """A new connection: the most recently active."""
        self._by_sock[connection.sock] = connection

    def remove(self, connection: Connection) -> None:
        """Forget a closed connection (no error if it was already forgotten)."""
        self._by_sock.pop(connection.sock, None)

    def touch(self, connection: Connection, now: float) -> None:
        """``connection`` was active at ``now``: it moves to the back."""
        connection.last_active = now
        if connection.sock in self._by_sock:
            self._by_sock.move_to_end(connection.sock)

    def idle(self) -> Iterator[Connection]:
        """Connections that could be closed, the longest idle first.

        Busy ones (points waiting, or not being read) are skipped. Do not
        change the table while iterating: take what you need first.
        """
        for connection in self._by_sock.values():
            if connection.reading and not connection.waiting and not connection.eof:
                yield connection

    def expired(self, cutoff: float) -> list[Connection]:
        """Idle connections last active before ``cutoff``."""
        found = []
        for connection in self.idle():
            if connection.last_active >= cutoff:
                break
            found.append(connection)
        return found

    def oldest_activity(self) -> float | None:
        """When the longest-idle closable connection was last active."""
        return next((c.last_active for c in self.idle()), None)
