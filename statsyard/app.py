"""StatsYard: the embedding API around the supervised pipeline.

One instance owns one supervision tree (queue, writer, consumer, and any
extra children) and everything that outlives its actors: the queue's
contents and the ledger. Several instances may run in one process; stopping
one stops only its own actors and threads.

``push()`` is cheap: points are staged in a small batch and handed to the
queue a batch at a time (one actor message per batch, not per point),
waiting while the queue is full. A partial batch goes out after ``linger``
seconds, on ``flush()`` and on ``stop()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

import pykka

from statsyard.blocking_queue import (
    BlockingQueue,
    BlockingQueueClient,
    PendingPush,
    fail_parked_callers,
)
from statsyard.exceptions import (
    NotRunningError,
    QueueClosedError,
    QueueTimeout,
    StatsYardError,
)
from statsyard.ingest_consumer import IngestConsumer, IngestFanOut, IngestObserver
from statsyard.instrumentation import PipelineInstruments, register_pipeline_gauges
from statsyard.ledger import Counts, Ledger, QueueContents
from statsyard.metrics import Registry, ShippableStats
from statsyard.process_stats import ProcessStats
from statsyard.stat_shipper import StatShipper
from statsyard.storage import QueryResult
from statsyard.supervisor import (
    ChildSpec,
    ChildTable,
    StartContext,
    Supervisor,
    SupervisorExit,
    ThreadTracker,
)
from statsyard.timestamp_writer import FsyncPolicy, StorageHandle, TimestampWriter

__all__ = ["CONSUMER", "QUEUE", "SHIPPER", "WRITER", "StatsYard"]

logger = logging.getLogger(__name__)

QUEUE = "queue"
WRITER = "writer"
CONSUMER = "consumer"
SHIPPER = "shipper"


class _HostLink:
    """The supervisor's own link: records its thread and its exit."""

    def __init__(self, threads: ThreadTracker) -> None:
        self._threads = threads

    def adopt(self, thread: threading.Thread) -> None:
        self._threads.add(thread)

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        """The supervisor's exit is reported through ``on_exit`` instead."""


class StatsYard:
    """A supervised, embeddable time-series pipeline writing to ``data_dir``.

    Args:
        data_dir: where points are stored (created if missing).
        queue_capacity: points the queue holds before pushes wait.
        batch_size: points per queue message and per write.
        fsync: ``always``, ``interval`` (default) or ``never``.
        fsync_interval: seconds between fsyncs under ``interval``.
        max_restarts: restarts allowed within ``max_seconds`` before the tree stops.
        max_seconds: the restart-intensity period.
        linger: seconds a partial batch of pushed points may wait before it is sent.
        storage_options: passed to :meth:`statsyard.storage.Storage.open`.
        extra_children: more children, started after the pipeline's own and
            before the shipper.
        registry: where metrics are recorded; a fresh one by default.
        instrument: record the pipeline's own metrics (docs/metrics.md).
        ship_metrics: run the StatShipper, sending the registry to DogStatsD.
        statsd_host: the DogStatsD agent's host.
        statsd_port: the DogStatsD agent's UDP port.
        metrics_namespace: prefix of every shipped metric name.
        metrics_tags: tags added to every shipped metric.
        ship_interval: seconds between shipments.
        shippable: which histogram and meter statistics ship.
        process_stats: also ship ``vm.*`` process statistics.
        ingest_observer: extra per-batch validation hooks (the stress run's).
        on_exit: called (from the supervisor's thread) if the tree stops by itself.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        queue_capacity: int = 100_000,
        batch_size: int = 5000,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        linger: float = 0.05,
        storage_options: dict[str, Any] | None = None,
        extra_children: Sequence[ChildSpec] = (),
        registry: Registry | None = None,
        instrument: bool = True,
        ship_metrics: bool = True,
        statsd_host: str = "127.0.0.1",
        statsd_port: int = 8125,
        metrics_namespace: str = "statsyard",
        metrics_tags: Mapping[str, str] | None = None,
        ship_interval: float = 1.0,
        shippable: ShippableStats | None = None,
        process_stats: bool = True,
        ingest_observer: IngestObserver | None = None,
        on_exit: Callable[[SupervisorExit], None] | None = None,
    ) -> None:
        if queue_capacity < 1:
            raise ValueError(f"queue_capacity must be at least 1, got {queue_capacity}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if linger <= 0:
            raise ValueError(f"linger must be > 0 seconds, got {linger}")
        self.data_dir = Path(data_dir)
        self.queue_capacity = queue_capacity
        self.batch_size = batch_size
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval = fsync_interval
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.linger = linger
        self._storage_options = storage_options or {}
        self._extra_children = tuple(extra_children)
        self.registry = registry if registry is not None else Registry()
        """The metrics registry (record your own metrics here too)."""
        self._instruments = PipelineInstruments(self.registry) if instrument else None
        observers = [o for o in (self._instruments, ingest_observer) if o is not None]
        self._ingest_observer: IngestObserver | None = (
            observers[0]
            if len(observers) == 1
            else IngestFanOut(observers)
            if observers
            else None
        )
        self._ship_metrics = ship_metrics
        self._shipper_options: dict[str, Any] = {
            "host": statsd_host,
            "port": statsd_port,
            "namespace": metrics_namespace,
            "constant_tags": dict(metrics_tags or {}),
            "interval": ship_interval,
            "shippable": shippable,
        }
        self._process_stats = process_stats
        self._host_on_exit = on_exit

        self.ledger = Ledger()
        self._storage_handle = StorageHandle()
        self._contents = QueueContents(capacity=queue_capacity)
        self._table = ChildTable()
        self._threads = ThreadTracker()
        self._supervisor_ref: pykka.ActorRef[Supervisor] | None = None
        self._exit: SupervisorExit | None = None
        self._exited = threading.Event()
        self._stopping = False

        # Staging: pushes collect here and go to the queue a batch at a time.
        self._stage_lock = threading.Lock()
        self._staged: list[Any] = []
        self._pending: PendingPush | None = None
        self._linger_stop = threading.Event()
        self._linger_thread: threading.Thread | None = None

        self.queue = BlockingQueueClient(
            lambda timeout: self._table.get(QUEUE, timeout)
        )
        """Blocking client of the queue actor (follows it through restarts)."""

    # -- lifecycle ----------------------------------------------------------

    def _specs(self) -> list[ChildSpec]:
        def start_queue(ctx: StartContext) -> pykka.ActorRef[Any]:
            return BlockingQueue.start(
                contents=self._contents, ledger=self.ledger, link=ctx.link
            )

        def start_writer(ctx: StartContext) -> pykka.ActorRef[Any]:
            return TimestampWriter.start(
                data_dir=self.data_dir,
                ledger=self.ledger,
                fsync=self.fsync,
                fsync_interval=self.fsync_interval,
                storage_options=self._storage_options,
                observer=self._instruments,
                handle=self._storage_handle,
                link=ctx.link,
            )

        def start_consumer(ctx: StartContext) -> pykka.ActorRef[Any]:
            return IngestConsumer.start(
                queue=ctx.siblings[QUEUE],
                writer=ctx.siblings[WRITER],
                ledger=self.ledger,
                batch_size=self.batch_size,
                observer=self._ingest_observer,
                link=ctx.link,
            )

        def start_shipper(ctx: StartContext) -> pykka.ActorRef[Any]:
            stats = (
                ProcessStats(mailboxes=self._table.mailboxes)
                if self._process_stats
                else None
            )
            return StatShipper.start(
                registry=self.registry,
                process_stats=stats,
                link=ctx.link,
                **self._shipper_options,
            )

        specs = [
            ChildSpec(QUEUE, start_queue),
            ChildSpec(WRITER, start_writer),
            ChildSpec(CONSUMER, start_consumer),
            *self._extra_children,
        ]
        if self._ship_metrics:
            specs.append(ChildSpec(SHIPPER, start_shipper))
        return specs

    def _count_restart(self, child_id: str) -> None:
        self.registry.counter("supervisor.restarts", tags={"child": child_id}).inc()

    def start(self) -> StatsYard:
        """Start the supervision tree; returns ``self``.

        Raises:
            StatsYardError: already started, or a child could not start.
        """
        if self._supervisor_ref is not None:
            raise NotRunningError("this StatsYard was already started")
        register_pipeline_gauges(self.registry, self.ledger, self._contents)
        self._supervisor_ref = Supervisor.start(
            specs=self._specs(),
            max_restarts=self.max_restarts,
            max_seconds=self.max_seconds,
            table=self._table,
            threads=self._threads,
            on_exit=self._on_tree_exit,
            on_restart=self._count_restart,
            link=_HostLink(self._threads),
        )
        # The supervisor answers only once on_start has started every child;
        # if a child could not start, the supervisor is dead and this fails.
        try:
            self._supervisor_ref.proxy().which_children().get(timeout=30.0)
        except pykka.ActorDeadError as exc:
            self._threads.join(5.0)
            raise NotRunningError(
                "StatsYard could not start its children (see the log)"
            ) from exc
        self._linger_thread = threading.Thread(
            target=self._linger_loop, name="statsyard-linger", daemon=True
        )
        self._linger_thread.start()
        logger.info(
            "StatsYard started in %s (queue capacity %d, fsync %s)",
            self.data_dir,
            self.queue_capacity,
            self.fsync,
        )
        return self

    def stop(self, timeout: float | None = 30.0) -> Counts:
        """Send what is staged, let the pipeline drain, stop the tree; return counts.

        Points that cannot be written by then are counted as lost and logged.
        """
        if self._stopping:
            return self.counts()
        self._stopping = True
        self._linger_stop.set()
        if self._linger_thread is not None:
            self._linger_thread.join()
        if self._exit is None and self._supervisor_ref is not None:
            try:
                self._flush(timeout)
            except Exception as exc:  # noqa: BLE001 (deliberate: stop goes on, accounts)
                logger.error("Could not drain the pipeline before stopping: %s", exc)
        if self._supervisor_ref is not None:
            self._supervisor_ref.stop(block=True, timeout=timeout)
        self._settle_losses("stopped")
        with self._stage_lock:
            if self._pending is not None:  # failed by now if not queued
                pending, self._pending = self._pending, None
                try:
                    self._await_push(pending)
                except StatsYardError:
                    pass  # counted as lost by _await_push
        stragglers = self._threads.join(timeout)
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
        self._exit = exit_
        if exit_.gave_up:
            logger.error("StatsYard's supervision tree stopped: %s", exit_.reason)
            self._settle_losses(exit_.reason)
        self._exited.set()
        if self._host_on_exit is not None:
            self._host_on_exit(exit_)

    def _settle_losses(self, reason: str) -> None:
        """Count everything that will now never be written, and release waiters."""
        contents = self._contents
        with self._stage_lock:
            staged, self._staged = self._staged, []
        lost = contents.size + contents.in_flight_size
        contents.chunks.clear()
        contents.head_offset = 0
        contents.size = 0
        contents.in_flight.clear()
        contents.closed = True
        fail_parked_callers(contents, QueueClosedError(f"StatsYard stopped: {reason}"))
        self._count_lost(len(staged), NotRunningError(reason))
        if lost:
            self.ledger.lose(lost)
            logger.error("Lost %d accepted points: %s", lost, reason)

    def wait_stopped(self, timeout: float | None = None) -> SupervisorExit | None:
        """Wait for the tree to stop (by itself or ``stop()``); return why, or None."""
        self._exited.wait(timeout)
        return self._exit

    @property
    def supervisor(self) -> pykka.ActorProxy[Supervisor]:
        """Proxy of the supervisor (``which_children()``, ``restart_child()``, ...)."""
        if self._supervisor_ref is None:
            raise NotRunningError("StatsYard is not started")
        return self._supervisor_ref.proxy()

    def child(self, child_id: str, timeout: float | None = 5.0) -> pykka.ActorRef[Any]:
        """The living child ``child_id``, waiting through a restart."""
        return self._table.get(child_id, timeout)

    # -- ingest ---------------------------------------------------------------

    def _check_running(self) -> None:
        if self._supervisor_ref is None:
            raise NotRunningError("StatsYard is not started")
        if self._stopping or self._exit is not None:
            reason = self._exit.reason if self._exit is not None else "stopped"
            raise NotRunningError(f"StatsYard is not running: {reason}")

    def push(self, point: Any) -> None:
        """Accept one point (anything ``validate`` accepts); waits while full."""
        self._check_running()
        with self._stage_lock:
            staged = self._staged
            staged.append(point)
            if len(staged) >= self.batch_size:
                self._send_staged()

    def push_many(self, points: Iterable[Any]) -> None:
        """Accept many points, in order; waits while the queue is full."""
        self._check_running()
        size = self.batch_size
        remaining = iter(points)
        with self._stage_lock:
            while True:
                # islice fills the batch at C speed; no Python step per point.
                self._staged.extend(islice(remaining, size - len(self._staged)))
                if len(self._staged) < size:
                    return
                self._send_staged()

    def _send_staged(self) -> None:
        """Hand the staged batch to the queue (caller holds the stage lock).

        One push stays in flight while the next batch fills; it is awaited
        before the next one goes, which is where back-pressure bites.
        """
        batch, self._staged = self._staged, []
        try:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._await_push(pending)
            if batch:
                self._pending = self.queue.submit(batch)
        except StatsYardError as exc:
            self._count_lost(len(batch), exc)
            raise

    def _await_push(self, pending: PendingPush) -> None:
        try:
            pending.wait()
        except (QueueClosedError, QueueTimeout, NotRunningError) as exc:
            self._count_lost(pending.size - getattr(exc, "accepted", 0), exc)
            raise

    def _count_lost(self, points: int, reason: Exception) -> None:
        """Points push() took that never reached the queue: count them as lost."""
        if points > 0:
            self.ledger.accept(points)
            self.ledger.lose(points)
            logger.error("Lost %d pushed points before the queue: %s", points, reason)

    def _linger_loop(self) -> None:
        while not self._linger_stop.wait(self.linger):
            with self._stage_lock:
                if self._staged or self._pending is not None:
                    try:
                        self._send_staged()
                        if self._pending is not None:
                            pending, self._pending = self._pending, None
                            self._await_push(pending)
                    except StatsYardError:  # logged and counted where it happened
                        if self._exit is not None:
                            return

    def flush(self, timeout: float | None = 30.0) -> None:
        """Return once every point pushed before the call is durable on disk.

        Raises:
            QueueTimeout: not done within ``timeout`` seconds.
            NotRunningError: the tree stopped.
        """
        self._check_running()
        self._flush(timeout)

    def _flush(self, timeout: float | None) -> None:
        with self._stage_lock:
            self._send_staged()
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._await_push(pending)
        target = self.ledger.pushed
        self.queue.await_committed(target, timeout=timeout)
        writer = self._table.get(WRITER, timeout)
        writer.proxy().sync().get(timeout=timeout)

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

    def counts(self) -> Counts:
        """Where pushed points ended: ``pushed == written+invalid+lost+pending``."""
        return self.ledger.counts()
