"""GraphiteListener: a supervised child that takes Carbon plaintext over TCP and UDP.

The actor only owns the sockets' lifetime and answers :meth:`addresses` and
:meth:`stats`; the network is served by one I/O thread of its own
(:class:`~statsyard.graphite._io_server.IoServer`, a :mod:`selectors` loop),
so that no actor handler ever blocks on a socket.

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
- **Bounded connections**: one silent for ``idle_timeout`` seconds is
  closed; with ``max_connections`` open, a new client closes the longest-idle
  one instead of being refused; a failing ``accept()`` (out of descriptors)
  pauses accepting rather than spinning (:mod:`._io_server`).
- If the I/O thread dies of an unexpected error, it tells the actor, which
  crashes with :class:`~statsyard.exceptions.ListenerError` so that its
  supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import pykka

from statsyard._ratelimit import RateLimitedLogger
from statsyard.exceptions import ListenerError
from statsyard.graphite._io_server import IoServer
from statsyard.graphite.protocol import GraphiteParser
from statsyard.graphite.stats import ListenerObserver, ListenerStats, Tally
from statsyard.supervision import ChildActor, Link

__all__ = ["GraphiteListener", "ListenerObserver", "ListenerStats"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

_UDP_PENDING: Final = 100_000
"""UDP points held while a push is in flight; more are dropped."""
IDLE_TIMEOUT: Final = 120.0
"""Default seconds without data before a TCP connection is closed."""


@attrs.frozen
class _IoFailed:
    """Message from the I/O thread: it died; the actor must crash."""

    error: BaseException


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


class GraphiteListener(ChildActor):
    """Serves Carbon's plaintext protocol on TCP and UDP into the queue.

    Args:
        queue: the BlockingQueue's ref (the sibling the supervisor gives).
        host: address to listen on.
        tcp_port: TCP port; 0 picks a free one (see :meth:`addresses`).
        udp_port: UDP port; 0 picks a free one.
        default_entity: entity of points without an ``entity`` tag.
        max_line_length: longest accepted line in bytes.
        max_connections: concurrent TCP connections; a new one beyond them
            closes the longest-idle one (or is closed, if all are busy).
        idle_timeout: seconds without data before a TCP connection is
            closed; 0 never closes one for silence.
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
        idle_timeout: float = IDLE_TIMEOUT,
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
        self._idle_timeout = idle_timeout
        self._tally = Tally(
            observer if observer is not None else ListenerObserver(),
            RateLimitedLogger(logger),
        )
        self._udp_limit = udp_pending
        self._progress = progress
        self._drain_timeout = drain_timeout
        self._recv_buffer = recv_buffer_bytes
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._server: IoServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

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
            self._server = IoServer(
                tcp=self._tcp,
                udp=self._udp,
                queue=self._queue,
                parser=self._parser,
                tally=self._tally,
                logger=logger,
                stopping=self._stopping,
                max_connections=self._max_connections,
                idle_timeout=self._idle_timeout,
                udp_pending=self._udp_limit,
                drain_timeout=self._drain_timeout,
                progress=self._progress,
            )
        except OSError:
            self._close_sockets()
            raise
        try:
            inode: int | None = os.fstat(self._udp.fileno()).st_ino
        except OSError:
            inode = None
        self._tally.observer.listening(inode)
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
        return self._tally.snapshot()

    # -- the I/O thread and shutdown -------------------------------------------

    def _serve(self) -> None:
        """The I/O thread: run the server; tell the actor if it dies."""
        assert self._server is not None
        try:
            self._server.run()
        except Exception as error:  # noqa: BLE001 (deliberate: logged by the server)
            if not self._stopping.is_set():
                self.actor_ref.tell(_IoFailed(error))

    def _close(self) -> None:
        self._stopping.set()
        server = self._server
        if server is not None:
            server.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._drain_timeout + 5.0)
            if thread.is_alive():
                logger.error("The Graphite I/O thread did not stop in time")
        self._thread = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for name in ("_tcp", "_udp"):
            sock = getattr(self, name)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
                setattr(self, name, None)
        if self._server is not None:
            self._server.close()
            self._server = None
