"""HttpServer: a supervised child serving the HTTP API with cheroot.

The actor owns the server's lifetime only; requests are served by cheroot's
own pool of worker threads, concurrently, each reading the live storage in
its own thread (never through an actor's mailbox). So a slow ``/render``
never blocks the actor, and the actor never blocks on a socket.

- Start: the socket is bound in ``on_start``; a taken port or a bad host
  fails the start with :class:`~statsyard.exceptions.HttpBindError`, one
  line naming ``http://HOST:PORT``, which the supervisor reports.
- Stop: cheroot stops accepting, finishes the requests in flight (bounded by
  its shutdown timeout) and joins its workers.
- If the serving thread dies of an unexpected error, it tells the actor,
  which crashes so that its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Final

import attrs
from cheroot import wsgi

from statsyard.exceptions import HttpBindError, ListenerError
from statsyard.supervision import ChildActor, Link

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["HttpServer"]

logger = logging.getLogger(__name__)

_SHUTDOWN_SECONDS: Final = 5
_POLL_SECONDS: Final = 0.1


@attrs.frozen
class _ServeFailed:
    """Message from the serving thread: it died; the actor must crash."""

    error: BaseException


class HttpServer(ChildActor):
    """Serves a WSGI application on ``host:port`` with cheroot's thread pool.

    Args:
        app: the WSGI application (an :class:`~statsyard.http.api.HttpApi`).
        host: address to listen on.
        port: TCP port; 0 picks a free one (see :meth:`address`).
        threads: worker threads, i.e. requests served at once.
        link: the supervisor's link.
    """

    def __init__(
        self,
        *,
        app: WSGIApplication,
        host: str = "127.0.0.1",
        port: int = 8080,
        threads: int = 8,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        self._app = app
        self._host = host
        self._port = port
        self._threads = threads
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- actor hooks (actor thread) -----------------------------------------

    def on_child_start(self) -> None:
        """Bind the socket and start serving; a bind failure fails the start."""
        server = wsgi.Server(
            (self._host, self._port),
            self._app,
            numthreads=self._threads,
            server_name="statsyard",
            shutdown_timeout=_SHUTDOWN_SECONDS,
        )
        # How often the accept loop looks at its stop flag: bounds stop().
        server.expiration_interval = _POLL_SECONDS
        try:
            server.prepare()
        except OSError as error:
            reason = error.strerror or str(error)
            if "Address already in use" in str(error):
                reason = "the port is already in use"
            raise HttpBindError(
                f"cannot serve the HTTP API on http://{self._host}:{self._port}: "
                f"{reason}",
                host=self._host,
                port=self._port,
            ) from error
        self._server = server
        self._thread = threading.Thread(
            target=self._serve, name="statsyard-http", daemon=True
        )
        if self._link is not None:
            self._link.adopt(self._thread)
        self._thread.start()
        host, port = self.address()
        logger.info("HTTP API on http://%s:%d", host, port)

    def on_child_stop(self) -> None:
        """Stop accepting, finish the requests in flight, join the workers."""
        self._close()
        logger.info("HTTP API stopped")

    def on_child_failure(self, error: BaseException | None) -> None:
        """Release the socket and threads after a crash."""
        self._close()

    def on_receive(self, message: Any) -> Any:
        """Crash when the serving thread reports its death; else as ChildActor."""
        if isinstance(message, _ServeFailed):
            raise ListenerError(
                f"the HTTP serving thread died: {message.error!r}"
            ) from message.error
        return super().on_receive(message)

    # -- proxy methods -------------------------------------------------------

    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``, port 0 resolved."""
        if self._server is None:
            raise ListenerError("the HTTP server is not listening")
        bound = self._server.bind_addr
        return str(bound[0]), int(bound[1])

    # -- serving (its own thread) ----------------------------------------------

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        try:
            server.serve()
        except Exception as error:  # noqa: BLE001 (deliberate: crash the actor)
            if not self._stopping.is_set():
                logger.error("HTTP serving thread died: %r", error)
                self.actor_ref.tell(_ServeFailed(error))

    def _close(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_SHUTDOWN_SECONDS + 5.0)
