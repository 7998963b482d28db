"""The Graphite listener's I/O thread: one selector loop over its sockets.

No call here blocks on an actor: points go to the queue through a
:class:`~statsyard.graphite._push.Pusher`, whose served push wakes the loop.
Resources stay bounded under hostile clients:

- a connection silent for ``idle_timeout`` seconds is closed;
- with ``max_connections`` open, a new client closes the longest-idle one
  (after reading what it may still have sent) rather than being refused; it
  is refused only when every open connection is busy (points waiting);
- when ``accept()`` fails (``EMFILE`` and the like) the listening socket is
  left out of the selector for a pause that doubles up to ``_PAUSE_MAX``,
  so the loop sleeps instead of spinning; new clients wait in the kernel's
  backlog until descriptors are free again.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import selectors
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from statsyard._ratelimit import RateLimitedLogger
from statsyard.graphite._connections import Connection, ConnectionTable
from statsyard.graphite._push import Pusher
from statsyard.graphite.protocol import GraphiteParser, LineStream
from statsyard.graphite.stats import CLIENT, EVICTED, IDLE, STOP, Tally

if TYPE_CHECKING:
    import logging
    import threading

    import pykka

    from statsyard.datapoint import Row

__all__ = ["IoServer"]

_READ_SIZE: Final = 256 * 1024
_UDP_SIZE: Final = 65_535
_UDP_BURST: Final = 64
_ACCEPT_BURST: Final = 64
_EVICT_TRIES: Final = 8
"""Idle connections read before one is evicted (each may turn out active)."""
_PAUSE_MIN: Final = 0.02
_PAUSE_MAX: Final = 1.0
"""Seconds accepting pauses after a failed ``accept()``: doubles from min to max."""
_RETRY_ACCEPT: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})
"""accept() errors about one vanished client: the next one may succeed."""

_ACCEPT: Final = "accept"
_UDP: Final = "udp"
_WAKE: Final = "wake"


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class IoServer:
    """Serves bound TCP and UDP sockets into a queue from one thread.

    Args:
        tcp: the bound, listening, non-blocking TCP socket.
        udp: the bound, non-blocking UDP socket.
        queue: the BlockingQueue's ref.
        parser: parses lines into points.
        tally: the listener's counters and observer.
        logger: where its lines go (the listener's channel).
        stopping: set by the actor to stop the loop (then :meth:`wake`).
        max_connections: the connection table's size.
        idle_timeout: seconds without data before a connection is closed; 0: never.
        udp_pending: UDP points held while a push is in flight.
        drain_timeout: at stop, how long to wait for room for points read.
        progress: a count that grows while the pipeline drains (see
            :func:`~statsyard.graphite._push.await_served`).
    """

    def __init__(
        self,
        *,
        tcp: socket.socket,
        udp: socket.socket,
        queue: pykka.ActorRef[Any],
        parser: GraphiteParser,
        tally: Tally,
        logger: logging.Logger,
        stopping: threading.Event,
        max_connections: int,
        idle_timeout: float,
        udp_pending: int,
        drain_timeout: float,
        progress: Callable[[], int] | None,
    ) -> None:
        self._tcp = tcp
        self._udp = udp
        self._parser = parser
        self._tally = tally
        self._logger = logger
        self._log = RateLimitedLogger(logger)
        self._stopping = stopping
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._drain_timeout = drain_timeout
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._connections = ConnectionTable(self._selector, tally, logger)
        self._pusher = Pusher(
            queue=queue,
            tally=tally,
            logger=logger,
            udp_pending=udp_pending,
            progress=progress,
            wake=self.wake,
        )
        self._pause = _PAUSE_MIN
        self._paused_until: float | None = None

    def wake(self) -> None:
        """Wake the loop; safe from any thread, never raises."""
        with contextlib.suppress(Exception):  # closed or full: a wake is due
            self._wake_w.send(b"x")

    def close(self) -> None:
        """Release the wake sockets (after the thread has ended)."""
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()

    def run(self) -> None:
        """The thread's body: serve until stopped, then drain.

        Raises:
            Exception: whatever broke the loop, after every connection was
                closed and what was held was counted lost.
        """
        try:
            self._loop()
        except Exception:  # deliberate: count and close, then let the actor know
            lost = self._held_points()
            self._logger.exception(
                "The Graphite I/O thread failed (%d points lost)", lost
            )
            with contextlib.suppress(Exception):  # deliberate: the observer may fail
                self._tally.lost(lost)
            for connection in self._connections:
                with contextlib.suppress(Exception):  # deliberate: closing goes on
                    self._connections.close(connection, STOP)
            raise
        else:
            self._drain_at_stop()
        finally:
            self._selector.close()

    def _held_points(self) -> int:
        held = sum(len(c.pending) for c in self._connections)
        return self._pusher.udp_held() + held

    # -- the loop ------------------------------------------------------------

    def _loop(self) -> None:
        selector = self._selector
        selector.register(self._tcp, selectors.EVENT_READ, _ACCEPT)
        selector.register(self._udp, selectors.EVENT_READ, _UDP)
        selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        while not self._stopping.is_set():
            # A push served, a socket ready, a stop or a deadline wakes us.
            ready = selector.select(self._next_timeout())
            self._tally.woke()
            for key, _ in ready:
                tag = key.data
                if tag is _ACCEPT:
                    self._accept()
                elif tag is _UDP:
                    self._read_udp()
                elif tag is _WAKE:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif tag.reading:  # not closed earlier in this round
                    self._read(tag)
                if self._stopping.is_set():
                    return
            self._pump()
            now = time.monotonic()
            self._close_idle(now)
            self._resume_accepting(now)

    def _next_timeout(self) -> float | None:
        """Seconds until the next idle expiry or accept resumption, or None."""
        deadlines = []
        if self._paused_until is not None:
            deadlines.append(self._paused_until)
        if self._idle_timeout > 0:
            oldest = self._connections.oldest_activity()
            if oldest is not None:
                deadlines.append(oldest + self._idle_timeout)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _close_idle(self, now: float) -> None:
        if self._idle_timeout <= 0:
            return
        expired = self._connections.expired(now - self._idle_timeout)
        for connection in expired:
            self._connections.close(connection, IDLE)
        if expired:
            self._log.warning(
                "idle",
                "Closed %d idle Graphite connection(s) (no data for %g s), e.g. %s",
                len(expired),
                self._idle_timeout,
                expired[0].peer,
            )

    # -- the queue -------------------------------------------------------------

    def _pump(self) -> None:
        """Push what waits; read again the connections whose points went."""
        now = time.monotonic()
        for connection in self._pusher.pump():
            if connection.eof:
                self._connections.close(connection, CLIENT)
            elif not self._pusher.queue_gone:
                self._connections.resume_reading(connection, now)  # busy until now
        for connection in self._pusher.waiting:  # back-pressure: not read
            self._connections.stop_reading(connection)

    # -- accepting -------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                sock, address = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _RETRY_ACCEPT:
                    continue
                self._pause_accepting(error)
                return
            self._pause = _PAUSE_MIN
            peer = _peer_name(address)
            if len(self._connections) >= self._max_connections and not self._evict():
                self._tally.refused()
                sock.close()
                self._log.warning(
                    "refused",
                    "Refused Graphite connection from %s: %d connections open, "
                    "all busy",
                    peer,
                    len(self._connections),
                )
                continue
            sock.setblocking(False)
            connection = Connection(
                sock, peer, LineStream(self._parser), time.monotonic()
            )
            self._connections.add(connection)
            self._logger.debug("Graphite connection from %s", peer)

    def _evict(self) -> bool:
        """Make room by closing the longest-idle connection; False if none is.

        Each candidate is read first: one that still had data is active, not
        idle, and the next candidate is tried.
        """
        candidates = list(itertools.islice(self._connections.idle(), _EVICT_TRIES))
        for victim in candidates:
            outcome = self._read(victim)
            if len(self._connections) < self._max_connections:
                return True  # it had hung up: room made
            if outcome != "nothing":
                continue  # it had sent something: active after all
            self._connections.close(victim, EVICTED)
            self._log.warning(
                "evicted",
                "Closed the longest-idle Graphite connection, from %s, to make "
                "room: %d connections open",
                victim.peer,
                len(self._connections) + 1,
            )
            return True
        return len(self._connections) < self._max_connections

    def _pause_accepting(self, error: OSError) -> None:
        """accept() failed: stop selecting the listening socket for a while."""
        self._tally.accept_failed()
        if self._paused_until is None:
            self._selector.unregister(self._tcp)
        pause = self._pause
        self._paused_until = time.monotonic() + pause
        self._pause = min(pause * 2, _PAUSE_MAX)
        self._log.warning(
            "accept",
            "Cannot accept Graphite connections (%s): pausing accepting for %g s, "
            "new clients wait in the kernel's backlog",
            error,
            pause,
        )

    def _resume_accepting(self, now: float) -> None:
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self._tcp, selectors.EVENT_READ, _ACCEPT)

    # -- reading ---------------------------------------------------------------

    def _read(self, connection: Connection) -> str:
        """Read once from a connection: ``"data"``, ``"eof"`` or ``"nothing"``."""
        try:
            data = connection.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return "nothing"
        except OSError as error:
            self._logger.debug(
                "Graphite connection from %s failed: %s", connection.peer, error
            )
            data = b""
        if not data:
            connection.eof = True
            self._connections.stop_reading(connection)
            lost = connection.stream.close()
            if lost is not None:
                self._tally.rejected([lost], connection.peer)
            if not connection.waiting:  # else closed once its points are pushed
                self._connections.close(connection, CLIENT)
            return "eof"
        self._connections.touch(connection, time.monotonic())
        points, rejects = connection.stream.feed(data)
        if rejects:
            self._tally.rejected(rejects, connection.peer)
        if points:
            connection.pending.extend(points)
            self._pusher.hold(connection)
        return "data"

    def _read_udp(self) -> None:
        datagrams = 0
        dropped = 0
        for _ in range(_UDP_BURST):
            try:
                data, address = self._udp.recvfrom(_UDP_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:  # e.g. ICMP errors surfacing on Linux
                self._logger.debug("Graphite UDP receive failed: %s", error)
                break
            datagrams += 1
            points, rejects, _ = self._parser.parse_lines(data, final=True)
            if rejects:
                self._tally.rejected(rejects, _peer_name(address))
            dropped += self._pusher.hold_udp(points)
        self._tally.udp(datagrams, dropped)

    # -- stopping --------------------------------------------------------------

    def _drain_at_stop(self) -> None:
        """Stop accepting, then queue what was already read, within drain_timeout.

        Bounded twice over: by ``drain_timeout``, and by the queue's life. If
        the queue died (the usual reason a sibling is stopped), nothing can be
        queued, so the listener stops at once and counts what it held.
        """
        for sock in (self._tcp, self._udp):
            with contextlib.suppress(OSError):
                sock.close()
        deadline = time.monotonic() + self._drain_timeout
        points: list[Row] = []
        for connection in self._connections:
            points.extend(connection.pending)
            connection.pending = []
            self._connections.close(connection, STOP)
        self._pusher.drain(points, deadline)
        lost, unconfirmed = self._tally.totals()
        if lost or unconfirmed:
            self._logger.warning(
                "Graphite listener stopped: %d points read were not queued, "
                "%d handed to the queue unconfirmed",
                lost,
                unconfirmed,
            )
