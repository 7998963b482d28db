"""StatsYard: the embedding API around the supervised pipeline.

One instance owns one supervision tree (queue, writer, consumer, and any
extra children, wired in :mod:`statsyard.tree`) and everything that outlives
its actors: the queue's contents and the ledger. Several instances may run in
one process; stopping one stops only its own actors and threads.

``push()`` is cheap: points are staged in a small batch
(:mod:`statsyard.pipeline.staging`) and handed to the queue a batch at a
time, waiting while the queue is full. A partial batch goes out after
``linger`` seconds, on ``flush()`` and on ``stop()``.
When the tree stops, :mod:`statsyard.pipeline.settlement` accounts for every
point it or the stage still held before the host is told.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pykka

from statsyard.config import Config, with_shortcuts
from statsyard.exceptions import (
    ConfigError,
    FlushTimeout,
    NotRunningError,
    StatsYardError,
)
from statsyard.forward import Cursor
from statsyard.metrics import Registry
from statsyard.pipeline.ingest_consumer import IngestObserver
from statsyard.pipeline.ledger import Counts
from statsyard.pipeline.queue_client import BlockingQueueClient
from statsyard.pipeline.settlement import Settlement
from statsyard.pipeline.staging import PushStage
from statsyard.storage import QueryResult
from statsyard.supervision import (
    ChildSpec,
    Supervisor,
    SupervisorExit,
    TreeStoppedError,
)
from statsyard.supervision.deadline import deadline_after, remaining
from statsyard.tree import (
    CONSUMER,
    GRAPHITE,
    GRAPHITE_DRAIN,
    HTTP,
    QUEUE,
    SHIPPER,
    WRITER,
    YardTree,
)

__all__ = ["CONSUMER", "GRAPHITE", "HTTP", "QUEUE", "SHIPPER", "WRITER", "StatsYard"]

logger = logging.getLogger(__name__)


class StatsYard:
    """A supervised, embeddable time-series pipeline, built from one settings tree.

    The settings are the same :class:`~statsyard.config.Config` the service
    builds from defaults, TOML, environment and flags, and that
    ``statsyard config`` prints; every child (queue, Graphite listener,
    writer, consumer, HTTP API, forwarders, shipper) is wired from it in
    :class:`~statsyard.tree.YardTree`. A few keyword shortcuts override the
    common settings.

    Args:
        settings: the settings tree; when None, ``Config.of()``: the
            defaults, with no Graphite listener and no HTTP API.
        data_dir: shortcut for ``settings.storage.data_dir``.
        queue_capacity: shortcut for ``settings.pipeline.queue_capacity``.
        batch_size: shortcut for ``settings.pipeline.batch_size``.
        ship_metrics: shortcut for ``settings.metrics.enabled``.
        registry: where metrics are recorded; a fresh one by default.
        extra_children: more children (:class:`~statsyard.supervision.ChildSpec`),
            started after the pipeline's own and before the HTTP API.
        on_exit: called once when the tree has stopped (by itself or by
            ``stop()``) and every point is settled; from StatsYard's linger
            thread, or from the thread that called ``stop()``.
        ingest_observer: extra per-batch validation hooks (the stress run's).

    Raises:
        ConfigError: a shortcut's value is invalid (it names the setting).
    """

    def __init__(
        self,
        settings: Config | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        queue_capacity: int | None = None,
        batch_size: int | None = None,
        ship_metrics: bool | None = None,
        registry: Registry | None = None,
        extra_children: Sequence[ChildSpec] = (),
        on_exit: Callable[[SupervisorExit], None] | None = None,
        ingest_observer: IngestObserver | None = None,
    ) -> None:
        if settings is not None and not isinstance(settings, Config):
            raise ConfigError(
                [
                    f"settings must be a statsyard Config, got {settings!r}; "
                    "a data directory is given as data_dir=..."
                ]
            )
        settings = with_shortcuts(
            settings if settings is not None else Config.of(),
            data_dir=data_dir,
            queue_capacity=queue_capacity,
            batch_size=batch_size,
            ship_metrics=ship_metrics,
        )
        self.settings = settings
        """The effective settings tree."""
        self.data_dir = Path(settings.storage.data_dir)
        self.queue_capacity = settings.pipeline.queue_capacity
        self.batch_size = settings.pipeline.batch_size
        self.linger = settings.pipeline.linger
        self.registry = registry if registry is not None else Registry()
        """The metrics registry (record your own metrics here too)."""
        self._tree = YardTree(
            settings,
            registry=self.registry,
            extra_children=extra_children,
            ingest_observer=ingest_observer,
            ready=self.ready,
        )
        self.forwarding = self._tree.forwarding
        """The forwarders: settings, progress (see :meth:`wait_forwarded`)."""
        self.ledger = self._tree.ledger
        self._contents = self._tree.contents
        self._storage_handle = self._tree.storage_handle
        self._table = self._tree.table
        self._running = threading.Event()
        self._supervisor_ref: pykka.ActorRef[Supervisor] | None = None
        self._stopping = False

        self.queue = BlockingQueueClient(lambda timeout: self._living(QUEUE, timeout))
        """Blocking client of the queue actor (follows it through restarts)."""
        self._stage = PushStage(
            queue=self.queue,
            ledger=self.ledger,
            batch_size=self.batch_size,
            linger=self.linger,
        )
        self._settlement = Settlement(
            contents=self._contents,
            ledger=self.ledger,
            stage=self._stage,
            on_exit=on_exit,
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> StatsYard:
        """Start the supervision tree; returns ``self``.

        Children start in order, each once the one before is up. If one
        fails, the start fails at once with no restarts (OTP's rule): the
        children already started stop in reverse order and the child's error
        is raised, e.g. :class:`~statsyard.exceptions.DataDirectoryInUseError`
        naming the directory, or :class:`~statsyard.exceptions.ChildStartError`
        (``__cause__``: the child's own error, e.g. a busy port's OSError).

        Raises:
            StatsYardError: already started, or a child could not start.
        """
        if self._supervisor_ref is not None:
            raise NotRunningError("this StatsYard was already started")
        self._supervisor_ref = self._tree.start(self._on_tree_exit)
        try:
            self._tree.wait_started()
        except StatsYardError:
            self._stopping = True
            raise
        self._stage.start_linger(self._settlement.settle_after_exit)
        self._running.set()
        logger.info(
            "StatsYard started in %s (queue capacity %d, fsync %s)",
            self.data_dir,
            self.queue_capacity,
            self.settings.storage.fsync,
        )
        return self

    def stop(self, timeout: float | None = 30.0) -> Counts:
        """Send what is staged, let the pipeline drain, stop the tree; return counts.

        ``timeout`` bounds the whole call, every step included: what cannot be
        written by then is counted as lost and logged, and threads that
        would not stop are logged at ERROR. Safe to call more than once, and
        from an ``on_exit`` callback.
        """
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        # Draining gets three quarters of the time, so that a pipeline that
        # cannot drain still leaves time to stop the tree and settle.
        drain_deadline = None if timeout is None else now + timeout * 0.75
        if self._stopping:
            return self.counts()
        self._stopping = True
        self._running.clear()
        self._stage.stopping()  # the linger thread returns once it is not sending
        if self._settlement.exit is None and self._supervisor_ref is not None:
            self._stop_input()
            try:
                self._flush(drain_deadline)
                if self.forwarding:  # let forwarders deliver within their deadline
                    end = self._storage_handle.get(timeout=0).log_end
                    self.forwarding.drain(
                        Cursor(end.seq, end.size), remaining(drain_deadline)
                    )
            except Exception as exc:  # noqa: BLE001 (deliberate: stop goes on, accounts)
                logger.error("Could not drain the pipeline before stopping: %s", exc)
        if self._supervisor_ref is not None:
            try:
                self._supervisor_ref.stop(block=True, timeout=remaining(deadline))
            except pykka.Timeout:
                logger.error("The supervision tree did not stop within %s s", timeout)
        self._settlement.settle(SupervisorExit("stopped", gave_up=False), deadline)
        if not self._stage.join_linger(remaining(deadline)):
            logger.error("The linger thread is still running after stop")
        stragglers = self._tree.threads.join(remaining(deadline))
        if stragglers:
            logger.error("Threads still running after stop: %s", stragglers)
        counts = self.counts()
        logger.info(
            "StatsYard stopped: %d pushed, %d written, %d invalid, %d lost",
            counts.pushed,
            counts.written,
            counts.invalid,
            counts.lost,
        )
        return counts

    def _stop_input(self) -> None:
        """Stop the Graphite listener first: it queues what it read, then flush."""
        if not self.settings.graphite.enabled or self._supervisor_ref is None:
            return
        try:
            self._living(GRAPHITE, 0.0)
        except NotRunningError:
            return  # already terminated (the service does it on a signal)
        try:
            self.supervisor.terminate_child(GRAPHITE).get(timeout=GRAPHITE_DRAIN + 10.0)
        except Exception as exc:  # noqa: BLE001 (deliberate: stop goes on, accounts)
            logger.error("Could not stop the Graphite listener: %s", exc)

    def __enter__(self) -> StatsYard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _on_tree_exit(self, exit_: SupervisorExit) -> None:
        """The tree stopped (supervisor's thread): refuse calls, settle the queue."""
        self._running.clear()
        self._settlement.tree_exited(exit_)

    def wait_stopped(self, timeout: float | None = None) -> SupervisorExit | None:
        """Wait for the tree to stop (by itself or ``stop()``); return why, or None.

        It returns the exit only once every point is settled: ``counts()``
        then has nothing pending.
        """
        return self._settlement.wait(timeout)

    @property
    def supervisor(self) -> pykka.ActorProxy[Supervisor]:
        """Proxy of the supervisor (``which_children()``, ``restart_child()``, ...)."""
        if self._supervisor_ref is None:
            raise NotRunningError("StatsYard is not started")
        return self._supervisor_ref.proxy()

    def ready(self) -> bool:
        """Whether the tree is up and the storage open (HTTP ``/-/ready``)."""
        if not self._running.is_set():
            return False
        try:
            self._storage_handle.get(timeout=0)
        except NotRunningError:
            return False
        return True

    @property
    def http_address(self) -> tuple[str, int] | None:
        """The HTTP API's bound ``(host, port)``, or None when it is not served."""
        if not self.settings.http.enabled or self._supervisor_ref is None:
            return None
        server = self._living(HTTP, 5.0)
        address: tuple[str, int] = server.proxy().address().get(timeout=5.0)
        return address

    def child(self, child_id: str, timeout: float | None = 5.0) -> pykka.ActorRef[Any]:
        """The living child ``child_id``, waiting through a restart.

        Raises:
            NotRunningError: the tree stopped, or no living child in time.
        """
        return self._living(child_id, timeout)

    def _living(self, child_id: str, timeout: float | None) -> pykka.ActorRef[Any]:
        """The child table's answer, with its error in StatsYard's terms."""
        try:
            return self._table.get(child_id, timeout)
        except TreeStoppedError as exc:
            if isinstance(exc, NotRunningError):
                raise
            raise NotRunningError(f"StatsYard is not running: {exc}") from exc

    # -- ingest ---------------------------------------------------------------

    def _check_running(self) -> None:
        if self._supervisor_ref is None:
            raise NotRunningError("StatsYard is not started")
        exit_ = self._settlement.exit
        if self._stopping or exit_ is not None:
            reason = exit_.reason if exit_ is not None else "stopped"
            raise NotRunningError(f"StatsYard is not running: {reason}")

    def push(self, point: Any) -> None:
        """Accept one point (anything ``validate`` accepts); waits while full.

        A ``(metric, entity, value)`` tuple, or a dict without a timestamp,
        is stamped now, in the caller's thread: the time it was pushed, kept
        however long it then waits in the queue or is redelivered.

        Raises:
            NotRunningError: the tree is not running (the point is not taken).
        """
        self._check_running()
        self._stage.push(point)

    def push_many(self, points: Iterable[Any]) -> None:
        """Accept many points, in order; waits while the queue is full.

        Points without a timestamp are stamped as they are taken, one clock
        reading per batch (see :meth:`push`).

        Raises:
            NotRunningError: the tree is not running; points already taken
                are settled (queued, or counted as lost).
        """
        self._check_running()
        self._stage.push_many(points)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Return once every point pushed before the call is durable on disk.

        Raises:
            FlushTimeout: not done within ``timeout`` seconds (a
                :class:`TimeoutError`; nothing is lost by it).
            NotRunningError: the tree is not running (or stopped meanwhile).
        """
        self._check_running()
        self._flush(deadline_after(timeout))

    def _flush(self, deadline: float | None) -> None:
        self._stage.send(deadline)
        target = self.ledger.next_index
        try:
            self.queue.await_committed(target, timeout=remaining(deadline))
            self._sync_writer(deadline)
        except pykka.Timeout as exc:
            raise FlushTimeout("the writer did not fsync in time") from exc
        except NotRunningError as exc:
            if self._table.closed:
                raise
            # No living queue or writer in time: a restart took too long.
            raise FlushTimeout(f"flush did not finish in time: {exc}") from exc

    def _sync_writer(self, deadline: float | None) -> None:
        """Fsync through the living writer, following a restart to its successor.

        A writer that dies while asked is restarted unless the tree stops: its
        successor reopens the same log (and fsyncs it at its first ``sync()``,
        whatever its predecessor had not), so a restart is waited for, not
        reported as a stop.

        Raises:
            NotRunningError: the tree stopped (or no writer lives in time).
            pykka.Timeout: the writer did not answer before ``deadline``.
        """
        while True:
            writer = self._living(WRITER, remaining(deadline))
            try:
                writer.proxy().sync().get(timeout=remaining(deadline))
                return
            except pykka.ActorDeadError as exc:
                if self._table.closed:
                    raise NotRunningError("the writer stopped during flush") from exc

    # -- reading back -----------------------------------------------------------

    def query(
        self,
        metric: str,
        entity: str | None = None,
        start: int | None = None,
        end: int | None = None,
        step: int | None = None,
        agg: str = "avg",
    ) -> QueryResult:
        """The points of ``metric`` in ``[start, end)`` ms, by entity, sorted by time.

        Runs in the calling thread while ingest goes on, and sees every point
        whose write was acknowledged before it started; a point written twice
        (same series and timestamp) reads back once, the last write winning.
        With ``step`` (ms), points are downsampled into buckets aggregated
        with ``agg``: ``avg``, ``min``, ``max``, ``sum``, ``count`` or ``last``.
        """
        return self._storage_handle.get(timeout=10.0).query(
            metric, entity, start=start, end=end, step=step, agg=agg
        )

    def series(self, pattern: str = "*") -> list[tuple[str, str]]:
        """Stored (metric, entity) pairs whose metric matches a Graphite glob."""
        return self._storage_handle.get(timeout=10.0).series(pattern)

    def wait_forwarded(self, timeout: float | None = 30.0) -> bool:
        """Wait until every forwarder delivered all that was acknowledged before.

        Points dropped and counted (a batch refused for good) count as done.
        Returns False if that did not happen within ``timeout`` seconds.
        """
        end = self._storage_handle.get(timeout=timeout).log_end
        return self.forwarding.wait_delivered(Cursor(end.seq, end.size), timeout)

    def counts(self) -> Counts:
        """Where pushed points ended: ``pushed == written+invalid+lost+pending``."""
        return self.ledger.counts()
