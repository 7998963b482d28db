"""The listener's TCP connections, kept in order of their last activity.

The table also registers them with the I/O loop's selector and closes them.

The order answers the two questions bounded resources ask: which connections
have been silent longer than ``idle_timeout`` (the front of the table), and
which one to close to make room for a new client (the first at the front).
A connection whose points wait for the queue is busy, not idle: it is never
closed for silence nor evicted, and its clock restarts when it is read again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

    from statsyard.datapoint import Row
    from statsyard.graphite.protocol import LineStream
    from statsyard.graphite.stats import Tally

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
    """The open connections by socket, the longest idle first.

    It also watches them (registers them with the I/O loop's selector) and
    closes them, counting each close by reason.
    """

    def __init__(
        self, selector: selectors.BaseSelector, tally: Tally, logger: logging.Logger
    ) -> None:
        self._by_sock: OrderedDict[socket.socket, Connection] = OrderedDict()
        self._selector = selector
        self._tally = tally
        self._logger = logger

    def __len__(self) -> int:
        return len(self._by_sock)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_sock.values()))

    def add(self, connection: Connection) -> None:
        """A new connection, read from now on: the most recently active."""
        self._by_sock[connection.sock] = connection
        self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        self._tally.opened()

    def stop_reading(self, connection: Connection) -> None:
        """Leave ``connection`` out of the selector (back-pressure, end of stream)."""
        if connection.reading:
            self._selector.unregister(connection.sock)
            connection.reading = False

    def resume_reading(self, connection: Connection, now: float) -> None:
        """Watch ``connection`` again; its idle clock restarts at ``now``."""
        if not connection.reading:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            connection.reading = True
        self.touch(connection, now)

    def close(self, connection: Connection, reason: str) -> None:
        """Close and forget ``connection``; a line it left unfinished is lost.

        ``reason`` is a key of :data:`~statsyard.graphite.stats.CLOSE_REASONS`.
        """
        self.stop_reading(connection)
        cut = connection.stream.close()
        if cut is not None:
            self._tally.rejected([cut], connection.peer)
        self._by_sock.pop(connection.sock, None)
        with contextlib.suppress(OSError):
            connection.sock.close()
        self._tally.closed(reason)
        self._logger.debug(
            "Graphite connection from %s closed (%s)", connection.peer, reason
        )

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
