"""GraphiteListener: a supervised child that takes Carbon plaintext over TCP and UDP.

The actor only owns the sockets' lifetime and answers :meth:`addresses` and
:meth:`stats`; the network is served by one I/O thread of its own, around a
:mod:`selectors` loop, so that no actor handler ever blocks on a socket.

- **TCP**: many concurrent connections, each read in chunks and parsed by a
  :class:`~statsyard.graphite.protocol.LineStream`. A connection closed in
  the middle of a line loses only that line (counted as ``partial``).
- **UDP**: each datagram is a batch of complete lines.
- **The queue**: the listener talks only to the queue it was started with
  (its sibling, given by the supervisor), by ``tell``-ing it a
  :class:`~statsyard.pipeline.queue_messages.Push` whose reply wakes the I/O thread.
  At most one push is in flight; it waits in the queue's FIFO of parked
  pushers like any embedded caller, so steady embedded pushers cannot starve
  it, and while it waits the I/O thread sleeps (no polling).
- **Back-pressure**: a TCP connection whose points are not yet handed to the
  queue is not read, so the kernel's buffers fill and the sender slows down:
  nothing is dropped. UDP cannot wait: up to ``_UDP_PENDING`` points are held,
  more are dropped and counted.
- **Its sibling dies**: if the queue is gone the listener stops reading and
  waits for the supervisor to stop it (rest-for-one), which it then does at
  once: no call of the I/O thread blocks on an actor, and no lock is held
  across one.
- A bad line is rejected, counted by reason, logged at WARNING (at most once
  a second per reason, with the number suppressed), and the connection goes on.
- If the I/O thread dies of an unexpected error, it tells the actor, which
  crashes with :class:`~statsyard.exceptions.ListenerError` so that its
  supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
import pykka

from statsyard._ratelimit import RateLimitedLogger
from statsyard.exceptions import ListenerError
from statsyard.graphite.protocol import REASONS, GraphiteParser, LineStream, Reject
from statsyard.pipeline.queue_messages import Push
from statsyard.supervision import ChildActor, Link

if TYPE_CHECKING:
    from statsyard.datapoint import Row

__all__ = ["GraphiteListener", "ListenerObserver", "ListenerStats"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

_READ_SIZE: Final = 256 * 1024
_UDP_SIZE: Final = 65_535
_UDP_BURST: Final = 64
_ACCEPT_BURST: Final = 64
_PUSH_POINTS: Final = 50_000
"""Points gathered into one push (more wait for the next)."""
_UDP_PENDING: Final = 100_000
"""UDP points held while a push is in flight; more are dropped."""
_STOP_POLL: Final = 0.05
_STALL: Final = 0.5
"""At stop: seconds the pipeline may stand still before the listener stops waiting."""
"""At stop only: how often to check that the queue still lives while draining."""


class ListenerObserver:
    """Hooks the listener calls from its I/O thread; the default does nothing.

    The metrics wiring overrides them to count lines and connections. Each
    is called after the listener's own counters (:meth:`GraphiteListener.stats`)
    are updated, so a test woken by one sees consistent stats.
    """

    def listening(self, udp_inode: int | None) -> None:
        """The listener bound its sockets (``udp_inode``: its UDP socket's inode)."""

    def queued(self, points: int) -> None:
        """``points`` read lines were queued (one push served)."""

    def rejected(self, reason: str, lines: int) -> None:
        """``lines`` lines were rejected for ``reason`` (a key of ``REASONS``)."""

    def udp_dropped(self, points: int) -> None:
        """``points`` good UDP points were dropped: the queue was full."""

    def lost(self, points: int) -> None:
        """``points`` read were not queued (closed queue, stop, queue gone)."""

    def unconfirmed(self, points: int) -> None:
        """At stop, ``points`` were handed to the queue with no answer seen."""

    def connection_opened(self) -> None:
        """A TCP connection was accepted."""

    def connection_closed(self) -> None:
        """A TCP connection was closed (by either side, or at stop)."""

    def connection_refused(self) -> None:
        """A TCP connection was closed at once: ``max_connections`` were open."""


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
    """Good points from datagrams dropped because the queue was full."""
    connections_open: int
    """TCP connections open now."""
    connections_total: int
    """TCP connections accepted."""
    connections_refused: int
    """TCP connections closed at once because ``max_connections`` were open."""
    points_lost_at_stop: int
    """Points read but not queued: refused by a closed queue or by the stop's
    drain timeout, or still held by the listener when its queue died."""
    points_unconfirmed: int
    """Points of the push in flight at stop whose answer never came (all of
    it, though the queue may have taken a first part): queued later if the
    queue had parked it (its contents outlive it), lost if the push was still
    in a dead queue's mailbox or the tree gave up."""
    pushes: int
    """Push messages sent to the queue (at most one in flight)."""


@attrs.frozen
class _IoFailed:
    """Message from the I/O thread: it died; the actor must crash."""

    error: BaseException


class _Connection:
    """One TCP client: its socket, its line stream and the points not yet pushed."""

    __slots__ = ("eof", "peer", "pending", "reading", "sock", "stream", "waiting")

    def __init__(self, sock: socket.socket, peer: str, stream: LineStream) -> None:
        self.sock = sock
        self.peer = peer
        self.stream = stream
        self.pending: list[Row] = []
        self.eof = False
        self.reading = True
        """Registered with the selector (not while its points wait)."""
        self.waiting = False
        """In the queue of connections whose points wait for the next push."""


class _Submission:
    """One push in flight: the reply slot the queue completes, from its thread.

    Completing it records the answer and wakes the I/O thread through the
    wake socket. It never raises: the queue calls it from its own handlers.
    """

    __slots__ = ("_wake", "error", "finished", "queued", "size")

    def __init__(self, size: int, wake: Callable[[], None]) -> None:
        self.size = size
        self.queued = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._wake = wake

    def set(self, value: Any = None) -> None:
        """All points were queued (``value`` is the count)."""
        self.queued = value if type(value) is int else self.size
        self._done()

    def set_exception(self, exc_info: Any = None) -> None:
        """Some points were not queued (``accepted`` on the error says how many)."""
        error = exc_info[1] if exc_info is not None else None
        self.error = error
        accepted = getattr(error, "accepted", 0)
        self.queued = accepted if type(accepted) is int else 0
        self._done()

    def _done(self) -> None:
        self.finished.set()
        self._wake()


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
    """Serves Carbon's plaintext protocol on TCP and UDP into the queue.

    Args:
        queue: the BlockingQueue's ref (the sibling the supervisor gives).
        host: address to listen on.
        tcp_port: TCP port; 0 picks a free one (see :meth:`addresses`).
        udp_port: UDP port; 0 picks a free one.
        default_entity: entity of points without an ``entity`` tag.
        max_line_length: longest accepted line in bytes.
        max_connections: concurrent TCP connections; more are closed at once.
        link: the supervisor's link.
        observer: hooks called from the I/O thread (metrics).
        drain_timeout: at stop, how long to wait for room for points already
            read before counting them lost.
        recv_buffer_bytes: kernel receive buffer of each TCP connection, or
            None for the system's (self-tuning) default.
        udp_pending: UDP points held while a push is in flight; more are
            dropped (and counted).
        progress: a count that grows while the pipeline drains (the ledger's
            committed index); at stop, the listener stops waiting for room
            once it stands still for half a second. None: wait the whole
            ``drain_timeout``.
        entity_tag: the Graphite tag that becomes the entity.
        templates: ``"FILTER TEMPLATE"`` rules mapping plain paths to metric
            and entity (:mod:`statsyard.graphite.templates`).
    """

    def __init__(
        self,
        *,
        queue: pykka.ActorRef[Any],
        host: str = "127.0.0.1",
        tcp_port: int = 2003,
        udp_port: int = 2003,
        default_entity: str = "graphite",
        max_line_length: int = 4096,
        max_connections: int = 1000,
        link: Link | None = None,
        observer: ListenerObserver | None = None,
        drain_timeout: float = 5.0,
        recv_buffer_bytes: int | None = None,
        udp_pending: int = _UDP_PENDING,
        progress: Callable[[], int] | None = None,
        entity_tag: str = "entity",
        templates: Sequence[str] = (),
    ) -> None:
        super().__init__(link=link)
        self._queue = queue
        self._host = host
        self._ports = (tcp_port, udp_port)
        self._parser = GraphiteParser(
            default_entity=default_entity,
            max_line_length=max_line_length,
            entity_tag=entity_tag,
            templates=templates,
        )
        self._max_connections = max_connections
        self._observer = observer if observer is not None else ListenerObserver()
        self._udp_limit = udp_pending
        self._progress = progress
        self._drain_timeout = drain_timeout
        self._recv_buffer = recv_buffer_bytes
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._log = RateLimitedLogger(logger)
        # I/O thread only: the push in flight and the points waiting for it.
        self._inflight: _Submission | None = None
        self._waiting: deque[_Connection] = deque()
        self._udp_pending: list[Row] = []
        self._queue_gone = False
        # Counters: written by the I/O thread, read by stats(), both under
        # _lock, which is never held across anything but the update itself.
        self._lock = threading.Lock()
        self._accepted = 0
        self._rejected = dict.fromkeys(REASONS, 0)
        self._datagrams = 0
        self._dropped = 0
        self._open = 0
        self._total = 0
        self._refused = 0
        self._lost = 0
        self._unconfirmed = 0
        self._pushes = 0

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
        try:
            inode: int | None = os.fstat(self._udp.fileno()).st_ino
        except OSError:
            inode = None
        self._observer.listening(inode)
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
                points_unconfirmed=self._unconfirmed,
                pushes=self._pushes,
            )

    # -- shutdown --------------------------------------------------------------

    def _close(self) -> None:
        self._stopping.set()
        self._wake()
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

    def _wake(self) -> None:
        """Wake the I/O thread; safe from any thread, never raises."""
        sock = self._wake_w
        if sock is not None:
            with contextlib.suppress(Exception):  # closed or full: a wake is due
                sock.send(b"x")

    # -- the I/O thread --------------------------------------------------------

    def _serve(self) -> None:
        connections: dict[socket.socket, _Connection] = {}
        selector = selectors.DefaultSelector()
        try:
            self._loop(selector, connections)
        except Exception as error:  # deliberate: the thread's boundary
            lost = self._held_points(connections)
            logger.exception("The Graphite I/O thread failed (%d points lost)", lost)
            with contextlib.suppress(Exception):  # deliberate: the observer may fail
                self._count_lost(lost)
            for connection in list(connections.values()):
                with contextlib.suppress(Exception):  # deliberate: closing goes on
                    self._finish(connections, connection)
            if not self._stopping.is_set():
                self.actor_ref.tell(_IoFailed(error))
        else:
            self._drain_at_stop(connections)
        finally:
            selector.close()

    def _held_points(self, connections: dict[socket.socket, _Connection]) -> int:
        return len(self._udp_pending) + sum(
            len(c.pending) for c in connections.values()
        )

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
        while not self._stopping.is_set():
            # No timeout: a push served, a socket ready or a stop wakes us.
            for key, _ in selector.select():
                tag = key.data
                if tag is _ACCEPT:
                    self._accept(selector, connections)
                elif tag is _UDP:
                    self._read_udp()
                elif tag is _WAKE:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                else:
                    self._read(selector, connections, tag)
                if self._stopping.is_set():
                    return
            self._pump(selector, connections)

    def _pump(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
    ) -> None:
        """Settle the push in flight if served; send the next; hold the rest."""
        inflight = self._inflight
        if inflight is not None:
            if not inflight.finished.is_set():
                self._hold_waiting(selector)
                return
            self._inflight = None
            self._settle(inflight)
        if self._queue_gone:
            self._hold_waiting(selector)
            return
        points, self._udp_pending = self._udp_pending, []
        taken: list[_Connection] = []
        while self._waiting and len(points) < _PUSH_POINTS:
            connection = self._waiting.popleft()
            connection.waiting = False
            points.extend(connection.pending)
            connection.pending = []
            taken.append(connection)
        if points:
            self._submit(points)
        for connection in taken:
            if connection.eof:
                self._finish(connections, connection)
            elif not connection.reading and not self._queue_gone:
                selector.register(connection.sock, selectors.EVENT_READ, connection)
                connection.reading = True
        self._hold_waiting(selector)

    def _hold_waiting(self, selector: selectors.BaseSelector) -> None:
        """Stop reading connections whose points wait: back-pressure for TCP."""
        for connection in self._waiting:
            if connection.reading:
                selector.unregister(connection.sock)
                connection.reading = False

    def _submit(self, points: list[Row], deadline: float | None = None) -> None:
        """Tell the queue one push; its reply wakes this thread when served."""
        submission = _Submission(len(points), self._wake)
        try:
            self._queue.tell(Push(tuple(points), deadline, reply=submission))
        except pykka.ActorDeadError:
            self._on_queue_gone(len(points))
            return
        self._inflight = submission
        with self._lock:
            self._pushes += 1

    def _on_queue_gone(self, lost: int) -> None:
        if not self._queue_gone:
            self._queue_gone = True
            logger.warning(
                "The queue is gone: the Graphite listener stops reading until "
                "the supervisor restarts it"
            )
        self._count_lost(lost)

    def _settle(self, submission: _Submission) -> None:
        with self._lock:
            self._accepted += submission.queued
        if submission.queued:
            self._observer.queued(submission.queued)
        missed = submission.size - submission.queued
        if missed:
            self._log.warning(
                "not-queued",
                "%d Graphite points were not queued: %s",
                missed,
                submission.error,
            )
            self._count_lost(missed)

    def _count_lost(self, points: int) -> None:
        if points:
            with self._lock:
                self._lost += points
            self._observer.lost(points)

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
                self._observer.connection_refused()
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
            self._observer.connection_opened()
            logger.debug("Graphite connection from %s", peer)

    def _read(
        self,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
        connection: _Connection,
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
            if connection.reading:
                selector.unregister(connection.sock)
                connection.reading = False
            lost = connection.stream.close()
            if lost is not None:
                self._count_rejects([lost], connection.peer)
            if not connection.waiting:
                self._finish(connections, connection)
            return
        points, rejects = connection.stream.feed(data)
        if rejects:
            self._count_rejects(rejects, connection.peer)
        if points:
            connection.pending.extend(points)
            if not connection.waiting:
                connection.waiting = True
                self._waiting.append(connection)

    def _read_udp(self) -> None:
        assert self._udp is not None
        datagrams = 0
        dropped = 0
        pending = self._udp_pending
        for _ in range(_UDP_BURST):
            try:
                data, address = self._udp.recvfrom(_UDP_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:  # e.g. ICMP errors surfacing on Linux
                logger.debug("Graphite UDP receive failed: %s", error)
                break
            datagrams += 1
            points, rejects, _ = self._parser.parse_lines(data, final=True)
            if rejects:
                self._count_rejects(rejects, _peer_name(address))
            room = self._udp_limit - len(pending)
            if len(points) > room:
                dropped += len(points) - max(room, 0)
                points = points[: max(room, 0)]
            pending.extend(points)
        with self._lock:
            self._datagrams += datagrams
            self._dropped += dropped
        if dropped:
            self._log.warning(
                "udp-drop", "Dropped %d Graphite UDP points: the queue is full", dropped
            )
            self._observer.udp_dropped(dropped)

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
            self._observer.rejected(reason, count)

    def _finish(
        self, connections: dict[socket.socket, _Connection], connection: _Connection
    ) -> None:
        connections.pop(connection.sock, None)
        with contextlib.suppress(OSError):
            connection.sock.close()
        with self._lock:
            self._open -= 1
        self._observer.connection_closed()
        logger.debug("Graphite connection from %s closed", connection.peer)

    def _drain_at_stop(self, connections: dict[socket.socket, _Connection]) -> None:
        """Stop accepting, then queue what was already read, within drain_timeout.

        Bounded twice over: by ``drain_timeout``, and by the queue's life. If
        the queue died (the usual reason a sibling is stopped), nothing can be
        queued, so the listener stops at once and counts what it held.
        """
        for sock in (self._tcp, self._udp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        deadline = time.monotonic() + self._drain_timeout
        points, self._udp_pending = self._udp_pending, []
        partial: list[Reject] = []
        for connection in list(connections.values()):
            points.extend(connection.pending)
            connection.pending = []
            cut = connection.stream.close()
            if cut is not None:
                partial.append(cut)
            self._finish(connections, connection)
        self._waiting.clear()
        if partial:
            self._count_rejects(partial, "connections closed at stop")
        inflight = self._inflight
        if inflight is not None and self._await(inflight, deadline):
            self._inflight = None
            self._settle(inflight)
            inflight = None
        if inflight is None and points and not self._queue_gone:
            self._submit(points, deadline)
            inflight, points = self._inflight, []
            if inflight is not None and self._await(inflight, deadline):
                self._inflight = None
                self._settle(inflight)
                inflight = None
        self._inflight = None
        self._count_lost(len(points))
        if inflight is not None:
            # Handed to the queue, answer not seen: a push the queue had
            # parked lives on in its contents (a restarted queue serves it);
            # one still in a dead queue's mailbox is gone. Not knowable here.
            with self._lock:
                self._unconfirmed += inflight.size
            self._observer.unconfirmed(inflight.size)
        with self._lock:
            lost, unconfirmed = self._lost, self._unconfirmed
        if lost or unconfirmed:
            logger.warning(
                "Graphite listener stopped: %d points read were not queued, "
                "%d handed to the queue unconfirmed",
                lost,
                unconfirmed,
            )

    def _await(self, submission: _Submission, deadline: float) -> bool:
        """Wait for a push to be served while the queue lives and moves.

        Bounded three ways: the deadline (the queue itself fails a push at
        its deadline; one second of grace covers the message's way back),
        the queue's death, and a pipeline that stops draining (``progress``
        standing still) for ``_STALL`` seconds: its consumer or writer is
        gone, the tree is stopping by itself, and waiting would only delay
        that.
        """
        progress = self._progress
        last = progress() if progress is not None else 0
        moved = time.monotonic()
        while self._queue.is_alive() and time.monotonic() <= deadline + 1.0:
            if submission.finished.wait(_STOP_POLL):
                return True
            if progress is None:
                continue
            now = progress()
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > _STALL:
                logger.warning("The pipeline stopped draining; the listener stops now")
                break
        return submission.finished.is_set()
