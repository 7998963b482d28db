"""GraphiteListener: a supervised child that takes Carbon plaintext over TCP and UDP.

The actor only owns the sockets' lifetime and answers :meth:`addresses` and
:meth:`stats`; the network is served by one I/O thread of its own, around a
:mod:`selectors` loop, so that no actor handler ever blocks on a socket.

- **TCP**: many concurrent connections, each read in chunks and parsed by a
  :class:`~statsyard.graphite_protocol.LineStream`. A connection closed in
  the middle of a line loses only that line (counted as ``partial``).
- **UDP**: each datagram is a batch of complete lines.
- **Back-pressure**: points go to the sink with the non-blocking
  ``offer_many``. When the sink is full, a TCP connection keeps the points
  that did not fit and is not read again until they are queued, so the
  kernel's buffers fill and the sender slows down: nothing is dropped. A UDP
  datagram cannot wait: the points that do not fit are dropped and counted.
- A bad line is rejected, counted by reason, logged at WARNING (at most once
  a second per reason, with the number suppressed), and the connection goes on.
- If the I/O thread dies of an unexpected error, it tells the actor, which
  crashes with :class:`~statsyard.exceptions.ListenerError` so that its
  supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from statsyard.child_actor import ChildActor, Link
from statsyard.exceptions import ListenerError, QueueTimeout
from statsyard.graphite_protocol import REASONS, GraphiteParser, LineStream, Reject

if TYPE_CHECKING:
    from statsyard.datapoint import Row

__all__ = ["GraphiteListener", "ListenerStats", "PointSink"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

_READ_SIZE: Final = 256 * 1024
_UDP_SIZE: Final = 65_535
_UDP_BURST: Final = 64
_ACCEPT_BURST: Final = 64
_RETRY_SECONDS: Final = 0.005
_LOG_EVERY: Final = 1.0


class PointSink(Protocol):
    """Where the listener puts points: the pipeline's queue client."""

    def push_many(
        self, points: Sequence[Row], *, timeout: float | None = None
    ) -> int | None:
        """Queue all points, blocking while full (a count returned is ignored).

        Raises:
            QueueTimeout: ``timeout`` passed; ``accepted`` says how many were queued.
        """

    def offer_many(self, points: Sequence[Row]) -> int:
        """Queue what fits now, never blocking; return how many were queued."""


@attrs.frozen
class ListenerStats:
    """Counters of a :class:`GraphiteListener` since it started."""

    lines_accepted: int
    """Lines parsed into points and queued (TCP and UDP)."""
    lines_rejected: int
    """Lines rejected, all reasons together."""
    rejected: dict[str, int]
    """Rejected lines by reason (a key of ``graphite_protocol.REASONS``)."""
    udp_datagrams: int
    """Datagrams received."""
    udp_points_dropped: int
    """Good points from datagrams that did not fit in a full sink."""
    connections_open: int
    """TCP connections open now."""
    connections_total: int
    """TCP connections accepted."""
    connections_refused: int
    """TCP connections closed at once because ``max_connections`` were open."""
    points_lost_at_stop: int
    """Points read from TCP but not queued before the stop's drain timeout."""


@attrs.frozen
class _IoFailed:
    """Message from the I/O thread: it died; the actor must crash."""

    error: BaseException


class _RateLimitedLog:
    """At most one WARNING per key per interval; counts what it held back."""

    def __init__(self, interval: float = _LOG_EVERY) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            logger.warning(message + " (%d more suppressed)", *args, held)
        else:
            logger.warning(message, *args)


class _Connection:
    """One TCP client: its socket, its line stream and the points waiting for room."""

    __slots__ = ("eof", "peer", "pending", "sock", "stream")

    def __init__(self, sock: socket.socket, peer: str, stream: LineStream) -> None:
        self.sock = sock
        self.peer = peer
        self.stream = stream
        self.pending: list[Row] = []
        self.eof = False


_ACCEPT: Final = "accept"
_UDP: Final = "udp"
_WAKE: Final = "wake"


def _bind(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=kind, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class GraphiteListener(ChildActor):
    """Serves Carbon's plaintext protocol on TCP and UDP into a point sink.

    Args:
        sink: where points go (the pipeline's queue client).
        host: address to listen on.
        tcp_port: TCP port; 0 picks a free one (see :meth:`addresses`).
        udp_port: UDP port; 0 picks a free one.
        default_entity: entity of points without an ``entity`` tag.
        max_line_length: longest accepted line in bytes.
        max_connections: concurrent TCP connections; more are closed at once.
        link: the supervisor's link.
        on_reject: called from the I/O thread with ``(reason, count)`` for
            rejected lines (e.g. a metrics counter).
        on_drop: called from the I/O thread with the number of UDP points
            dropped because the sink was full.
        drain_timeout: at stop, how long to wait for room for points already
            read from TCP connections before counting them lost.
        recv_buffer_bytes: kernel receive buffer of each TCP connection, or
            None for the system's (self-tuning) default.
        entity_tag: the Graphite tag that becomes the entity.
        templates: ``"FILTER TEMPLATE"`` rules mapping plain paths to metric
            and entity (:mod:`statsyard.graphite_templates`).
    """

    def __init__(
        self,
        *,
        sink: PointSink,
        host: str = "127.0.0.1",
        tcp_port: int = 2003,
        udp_port: int = 2003,
        default_entity: str = "graphite",
        max_line_length: int = 4096,
        max_connections: int = 1000,
        link: Link | None = None,
        on_reject: Callable[[str, int], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
        drain_timeout: float = 5.0,
        recv_buffer_bytes: int | None = None,
        entity_tag: str = "entity",
        templates: Sequence[str] = (),
    ) -> None:
        super().__init__(link=link)
        self._sink = sink
        self._host = host
        self._ports = (tcp_port, udp_port)
        self._parser = GraphiteParser(
            default_entity=default_entity,
            max_line_length=max_line_length,
            entity_tag=entity_tag,
            templates=templates,
        )
        self._max_connections = max_connections
        self._on_reject = on_reject
        self._on_drop = on_drop
        self._drain_timeout = drain_timeout
        self._recv_buffer = recv_buffer_bytes
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._log = _RateLimitedLog()
        # Counters: written by the I/O thread, read by stats(), both under _lock.
        self._lock = threading.Lock()
        self._accepted = 0
        self._rejected = dict.fromkeys(REASONS, 0)
        self._datagrams = 0
        self._dropped = 0
        self._open = 0
        self._total = 0
        self._refused = 0
        self._lost = 0

    # -- actor hooks (actor thread) -----------------------------------------

    def on_child_start(self) -> None:
        """Bind both sockets and start the I/O thread."""
        tcp_port, udp_port = self._ports
        try:
            self._tcp = _bind(self._host, tcp_port, socket.SOCK_STREAM)
            if self._recv_buffer is not None:
                self._tcp.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer
                )
            self._udp = _bind(self._host, udp_port, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                self._udp.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024
                )
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._thread = threading.Thread(
            target=self._serve, name="statsyard-graphite-io", daemon=True
        )
        if self._link is not None:
            self._link.adopt(self._thread)
        self._thread.start()
        tcp, udp = self.addresses()
        logger.info(
            "Graphite listener on tcp %s:%d and udp %s:%d",
            tcp[0],
            tcp[1],
            udp[0],
            udp[1],
        )

    def on_child_stop(self) -> None:
        """Stop accepting, drain what was read, close the sockets, join the thread."""
        self._close()
        stats = self.stats()
        logger.info(
            "Graphite listener stopped: %d lines accepted, %d rejected, "
            "%d UDP points dropped, %d points lost at stop",
            stats.lines_accepted,
            stats.lines_rejected,
            stats.udp_points_dropped,
            stats.points_lost_at_stop,
        )

    def on_child_failure(self, error: BaseException | None) -> None:
        """Release the sockets and the thread after a crash."""
        self._close()

    def on_receive(self, message: Any) -> Any:
        """Crash when the I/O thread reports its death; otherwise as ChildActor."""
        if isinstance(message, _IoFailed):
            raise ListenerError(
                f"the Graphite I/O thread died: {message.error!r}"
            ) from message.error
        return super().on_receive(message)

    # -- proxy methods -------------------------------------------------------

    def addresses(self) -> tuple[Address, Address]:
        """The bound ``((tcp host, port), (udp host, port))``; port 0 resolved."""
        if self._tcp is None or self._udp is None:
            raise ListenerError("the Graphite listener has no sockets")
        tcp = self._tcp.getsockname()
        udp = self._udp.getsockname()
        return (str(tcp[0]), int(tcp[1])), (str(udp[0]), int(udp[1]))

    def stats(self) -> ListenerStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return ListenerStats(
                lines_accepted=self._accepted,
                lines_rejected=sum(self._rejected.values()),
                rejected=dict(self._rejected),
                udp_datagrams=self._datagrams,
                udp_points_dropped=self._dropped,
                connections_open=self._open,
                connections_total=self._total,
                connections_refused=self._refused,
                points_lost_at_stop=self._lost,
            )

    # -- shutdown --------------------------------------------------------------

    def _close(self) -> None:
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._drain_timeout + 5.0)
            if thread.is_alive():
                logger.error("The Graphite I/O thread did not stop in time")
        self._thread = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for name in ("_tcp", "_udp", "_wake_r", "_wake_w"):
            sock = getattr(self, name)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
                setattr(self, name, None)

    # -- the I/O thread --------------------------------------------------------

    def _serve(self) -> None:
        connections: dict[socket.socket, _Connection] = {}
        selector = selectors.DefaultSelector()
        try:
            self._loop(selector, connections)
        except Exception as error:  # deliberate: the thread's boundary
            lost = sum(len(c.pending) for c in connections.values())
            logger.exception("The Graphite I/O thread failed (%d points lost)", lost)
            for connection in connections.values():
                self._drop_connection(connection)
            if not self._stopping.is_set():
                self.actor_ref.tell(_IoFailed(error))
        else:
            self._drain_at_stop(connections)
        finally:
            selector.close()

    def _loop(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
    ) -> None:
        assert (
            self._tcp is not None and self._udp is not None and self._wake_r is not None
        )
        selector.register(self._tcp, selectors.EVENT_READ, _ACCEPT)
        selector.register(self._udp, selectors.EVENT_READ, _UDP)
        selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        blocked: list[_Connection] = []
        while not self._stopping.is_set():
            events = selector.select(_RETRY_SECONDS if blocked else None)
            for key, _ in events:
                tag = key.data
                if tag is _ACCEPT:
                    self._accept(selector, connections)
                elif tag is _UDP:
                    self._read_udp()
                elif tag is _WAKE:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    self._read(selector, connections, tag, blocked)
                if self._stopping.is_set():
                    return
            if blocked:
                self._retry(selector, connections, blocked)

    def _accept(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
    ) -> None:
        assert self._tcp is not None
        for _ in range(_ACCEPT_BURST):
            try:
                sock, address = self._tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. EMFILE: keep serving the others
                self._log.warning(
                    "accept", "Cannot accept a Graphite connection: %s", error
                )
                return
            peer = _peer_name(address)
            if len(connections) >= self._max_connections:
                with self._lock:
                    self._refused += 1
                sock.close()
                self._log.warning(
                    "refused",
                    "Refused Graphite connection from %s: %d connections open",
                    peer,
                    len(connections),
                )
                continue
            sock.setblocking(False)
            connection = _Connection(sock, peer, LineStream(self._parser))
            connections[sock] = connection
            selector.register(sock, selectors.EVENT_READ, connection)
            with self._lock:
                self._open += 1
                self._total += 1
            logger.debug("Graphite connection from %s", peer)

    def _read(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
        connection: _Connection,
        blocked: list[_Connection],
    ) -> None:
        try:
            data = connection.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            logger.debug(
                "Graphite connection from %s failed: %s", connection.peer, error
            )
            data = b""
        if not data:
            connection.eof = True
            selector.unregister(connection.sock)
            lost = connection.stream.close()
            if lost is not None:
                self._count_rejects([lost], connection.peer)
            if connection.pending:
                blocked.append(connection)
            else:
                self._finish(connections, connection)
            return
        points, rejects = connection.stream.feed(data)
        if rejects:
            self._count_rejects(rejects, connection.peer)
        if points:
            with self._lock:
                queued = self._sink.offer_many(points)
                self._accepted += queued
            if queued < len(points):
                connection.pending = points[queued:]
                selector.unregister(connection.sock)
                blocked.append(connection)

    def _retry(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
        blocked: list[_Connection],
    ) -> None:
        """Offer the waiting points again, oldest connection first."""
        while blocked:
            connection = blocked[0]
            with self._lock:
                queued = self._sink.offer_many(connection.pending)
                self._accepted += queued
            if queued < len(connection.pending):
                connection.pending = connection.pending[queued:]
                return  # still full: try again after the next wait
            connection.pending = []
            blocked.pop(0)
            if connection.eof:
                self._finish(connections, connection)
            else:
                selector.register(connection.sock, selectors.EVENT_READ, connection)

    def _read_udp(self) -> None:
        assert self._udp is not None
        points: list[Row] = []
        datagrams = 0
        for _ in range(_UDP_BURST):
            try:
                data, address = self._udp.recvfrom(_UDP_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:  # e.g. ICMP errors surfacing on Linux
                logger.debug("Graphite UDP receive failed: %s", error)
                break
            datagrams += 1
            more, rejects, _ = self._parser.parse_lines(data, final=True)
            if rejects:
                self._count_rejects(rejects, _peer_name(address))
            points.extend(more)
        queued = 0
        with self._lock:
            if points:
                queued = self._sink.offer_many(points)
                self._accepted += queued
                self._dropped += len(points) - queued
            self._datagrams += datagrams
        dropped = len(points) - queued
        if dropped:
            self._log.warning(
                "udp-drop", "Dropped %d Graphite UDP points: the queue is full", dropped
            )
            if self._on_drop is not None:
                self._on_drop(dropped)

    def _count_rejects(self, rejects: Sequence[Reject], peer: str) -> None:
        counts: dict[str, int] = {}
        for reject in rejects:
            counts[reject.reason] = counts.get(reject.reason, 0) + 1
        with self._lock:
            for reason, count in counts.items():
                self._rejected[reason] += count
        for reason, count in counts.items():
            example = next(r for r in rejects if r.reason == reason)
            self._log.warning(
                reason,
                "Rejected %d Graphite line(s) from %s: %s, e.g. %r",
                count,
                peer,
                REASONS[reason],
                example.line,
            )
            if self._on_reject is not None:
                self._on_reject(reason, count)

    def _finish(
        self, connections: dict[socket.socket, _Connection], connection: _Connection
    ) -> None:
        connections.pop(connection.sock, None)
        with contextlib.suppress(OSError):
            connection.sock.close()
        with self._lock:
            self._open -= 1
        logger.debug("Graphite connection from %s closed", connection.peer)

    def _drop_connection(self, connection: _Connection) -> None:
        with contextlib.suppress(OSError):
            connection.sock.close()

    def _drain_at_stop(self, connections: dict[socket.socket, _Connection]) -> None:
        """Stop accepting, then queue what was already read, within drain_timeout."""
        for sock in (self._tcp, self._udp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        deadline = time.monotonic() + self._drain_timeout
        lost = 0
        partial: list[Reject] = []
        for connection in list(connections.values()):
            pending = connection.pending
            connection.pending = []
            if pending:
                try:
                    self._sink.push_many(
                        pending, timeout=max(0.0, deadline - time.monotonic())
                    )
                    queued = len(pending)
                except QueueTimeout as timeout:
                    queued = timeout.accepted
                with self._lock:
                    self._accepted += queued
                lost += len(pending) - queued
            cut = connection.stream.close()
            if cut is not None:
                partial.append(cut)
            self._finish(connections, connection)
        if partial:
            self._count_rejects(partial, "connections closed at stop")
        if lost:
            with self._lock:
                self._lost += lost
            logger.error(
                "Graphite listener stopped with %d points it could not queue in %.1f s",
                lost,
                self._drain_timeout,
            )
