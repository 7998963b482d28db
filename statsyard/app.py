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
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pykka

from statsyard.config import Config, with_shortcuts
from statsyard.datapoint import DataPoint, now_ms
from statsyard.exceptions import (
    ChildStartError,
    ConfigError,
    FlushTimeout,
    NotRunningError,
    QueueClosedError,
    StatsYardError,
)
from statsyard.forward import Cursor, Forwarding
from statsyard.graphite.listener import GraphiteListener
from statsyard.http.options import HttpOptions
from statsyard.metrics import Registry
from statsyard.metrics.instruments import (
    ListenerInstruments,
    PipelineInstruments,
    register_pipeline_gauges,
)
from statsyard.metrics.process_stats import ProcessStats
from statsyard.metrics.stat_shipper import StatShipper
from statsyard.pipeline.blocking_queue import BlockingQueue, close_contents
from statsyard.pipeline.ingest_consumer import (
    IngestConsumer,
    IngestFanOut,
    IngestObserver,
)
from statsyard.pipeline.ledger import Counts, Ledger, QueueContents
from statsyard.pipeline.queue_client import (
    BlockingQueueClient,
    NoAnswerYet,
    PendingPush,
)
from statsyard.pipeline.timestamp_writer import (
    FsyncPolicy,
    StorageHandle,
    TimestampWriter,
)
from statsyard.render import RenderSettings
from statsyard.storage import QueryResult
from statsyard.supervision import (
    ChildSpec,
    ChildTable,
    StartContext,
    Supervisor,
    SupervisorExit,
    ThreadTracker,
    TreeStoppedError,
)
from statsyard.supervision import ChildStartError as _SupervisionStartError
from statsyard.supervision.deadline import deadline_after, lock_timeout, remaining

__all__ = ["CONSUMER", "GRAPHITE", "HTTP", "QUEUE", "SHIPPER", "WRITER", "StatsYard"]

logger = logging.getLogger(__name__)

QUEUE = "queue"
WRITER = "writer"
CONSUMER = "consumer"
SHIPPER = "shipper"
GRAPHITE = "graphite"

_GRAPHITE_DRAIN = 5.0
"""Seconds the Graphite listener may take at stop to queue what it read."""
HTTP = "http"


class _HostLink:
    """The supervisor's own link: records its thread, its start and its exit.

    The supervisor's exit is reported to the host through ``on_exit``; a
    failed start is reported here, as the supervisor's crash in ``on_start``.
    """

    def __init__(self, threads: ThreadTracker) -> None:
        self._threads = threads
        self._ready = threading.Event()
        self.start_error: BaseException | None = None

    def adopt(self, thread: threading.Thread) -> None:
        self._threads.add(thread)

    def started(self) -> None:
        self._ready.set()

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        if not self._ready.is_set():
            self.start_error = error
            self._ready.set()

    def wait_started(self, timeout: float | None) -> bool:
        """Wait for the supervisor's start to succeed or fail; False if neither."""
        return self._ready.wait(timeout)


def _stamped(points: list[Any], now: int) -> list[Any]:
    """``points`` with ``now`` (ms) given to each tuple or dict lacking a timestamp.

    Only plain tuples and dicts are looked at; anything else is left to
    validation, as is every point that already has a timestamp. A batch of
    DataPoints or 4-tuples is recognised at C speed and returned as it is.
    """
    kinds = set(map(type, points))
    if kinds <= _COMPLETE or (kinds == _TUPLE and 3 not in map(len, points)):
        return points
    return [
        (*p, now)
        if type(p) is tuple and len(p) == 3
        else {**p, "timestamp": now}
        if type(p) is dict and p.get("timestamp") is None
        else p
        for p in points
    ]


_COMPLETE: frozenset[type] = frozenset({DataPoint})
_TUPLE: frozenset[type] = frozenset({tuple})


_START_JOIN = 30.0
"""Seconds to wait for the threads of a failed start to end."""


class StatsYard:
    """A supervised, embeddable time-series pipeline, built from one settings tree.

    The settings are the same :class:`~statsyard.config.Config` the service
    builds from defaults, TOML, environment and flags, and that
    ``statsyard config`` prints; every child (queue, Graphite listener,
    writer, consumer, HTTP API, forwarders, shipper) is wired from it in
    :meth:`_specs`. A few keyword shortcuts override the common settings.

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
        self._extra_children = tuple(extra_children)
        self.registry = registry if registry is not None else Registry()
        """The metrics registry (record your own metrics here too)."""
        # -- forwarding (statsyard.forward) --
        self.forwarding = Forwarding(
            settings.forward,
            data_dir=self.data_dir,
            registry=self.registry,
            ingest_busy=lambda: self._contents.size * 2 >= self.queue_capacity,
        )
        """The forwarders: settings, progress (see :meth:`wait_forwarded`)."""
        self._storage_options = settings.storage.open_options()
        if self.forwarding.retention is not None:
            self._storage_options["log_retention"] = self.forwarding.retention
        instrument = settings.metrics.instrument
        graphite = settings.graphite.enabled
        self._instruments = PipelineInstruments(self.registry) if instrument else None
        self._listener_instruments = (
            ListenerInstruments(self.registry) if instrument and graphite else None
        )
        observers = [o for o in (self._instruments, ingest_observer) if o is not None]
        self._ingest_observer: IngestObserver | None = (
            observers[0]
            if len(observers) == 1
            else IngestFanOut(observers)
            if observers
            else None
        )
        self._host_on_exit = on_exit
        self._running = threading.Event()

        self.ledger = Ledger()
        self._storage_handle = StorageHandle()
        self._contents = QueueContents(capacity=self.queue_capacity)
        self._table = ChildTable()
        self._threads = ThreadTracker()
        self._supervisor_ref: pykka.ActorRef[Supervisor] | None = None
        self._exit: SupervisorExit | None = None
        self._exited = threading.Event()
        self._stopping = False

        # Staging: pushes collect here and go to the queue a batch at a time.
        # The stage lock is held while a pusher waits on the queue, so no
        # thread of the tree ever takes it (see _on_tree_exit).
        self._stage_lock = threading.Lock()
        self._staged: list[Any] = []
        self._staged_since = 0.0
        self._pending: PendingPush | None = None
        self._settled = False
        # The linger thread sleeps on this until there is something to send.
        self._wake = threading.Event()
        self._linger_wakeups = 0
        self._linger_thread: threading.Thread | None = None

        self.queue = BlockingQueueClient(lambda timeout: self._living(QUEUE, timeout))
        """Blocking client of the queue actor (follows it through restarts)."""

    # -- lifecycle ----------------------------------------------------------

    def _specs(self) -> list[ChildSpec]:
        def start_queue(ctx: StartContext) -> pykka.ActorRef[Any]:
            return BlockingQueue.start(
                contents=self._contents, ledger=self.ledger, link=ctx.link
            )

        def start_graphite(ctx: StartContext) -> pykka.ActorRef[Any]:
            settings = self.settings.graphite
            return GraphiteListener.start(
                queue=ctx.siblings[QUEUE],
                host=settings.host,
                tcp_port=settings.tcp_port,
                udp_port=settings.udp_port,
                default_entity=settings.default_entity,
                max_line_length=settings.max_line_length,
                max_connections=settings.max_connections,
                idle_timeout=settings.idle_timeout,
                entity_tag=settings.entity_tag,
                templates=settings.templates,
                drain_timeout=_GRAPHITE_DRAIN,
                observer=self._listener_instruments,
                progress=lambda: self.ledger.committed_upto,
                link=ctx.link,
            )

        def start_writer(ctx: StartContext) -> pykka.ActorRef[Any]:
            return TimestampWriter.start(
                data_dir=self.data_dir,
                ledger=self.ledger,
                fsync=cast("FsyncPolicy", self.settings.storage.fsync),
                fsync_interval=self.settings.storage.fsync_interval,
                checkpoint_after=self.settings.storage.checkpoint_after,
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
            metrics = self.settings.metrics
            stats = (
                ProcessStats(mailboxes=self._table.mailboxes)
                if metrics.process_stats
                else None
            )
            return StatShipper.start(
                registry=self.registry,
                process_stats=stats,
                host=metrics.host,
                port=metrics.port,
                namespace=metrics.namespace,
                constant_tags=dict(metrics.tags),
                interval=metrics.interval,
                link=ctx.link,
            )

        # The listener needs only the queue, so it comes right after it: a
        # writer or consumer crash does not drop its connections.
        specs = [ChildSpec(QUEUE, start_queue)]
        if self.settings.graphite.enabled:
            specs.append(
                ChildSpec(GRAPHITE, start_graphite, shutdown=_GRAPHITE_DRAIN + 5.0)
            )
        specs += [
            # Opening the data directory recovers it: as long as that takes.
            ChildSpec(WRITER, start_writer, start_timeout=None),
            ChildSpec(CONSUMER, start_consumer),
            *self._extra_children,
        ]
        if self.settings.http.enabled:
            specs.append(self._http_spec(self._http_options()))
        specs += self.forwarding.specs(self._storage_handle)  # after http: a
        # forwarder crash then restarts only the shipper with it
        if self.settings.metrics.enabled:
            specs.append(ChildSpec(SHIPPER, start_shipper))
        for spec in specs:  # each child's restarts ship from the first interval, at 0
            self.registry.counter("supervisor.restarts", tags={"child": spec.id})
        return specs

    def _http_options(self) -> HttpOptions:
        """The HTTP API's options, from the ``http``, ``graphite`` and ``render``
        settings."""
        settings = self.settings
        return HttpOptions(
            host=settings.http.host,
            port=settings.http.port,
            threads=settings.http.threads,
            default_entity=settings.graphite.default_entity,
            render=RenderSettings.from_config(settings),
        )

    def _http_spec(self, options: HttpOptions) -> ChildSpec:
        """The HTTP child: serves the API from the live storage (statsyard.http)."""
        from statsyard.http.http_server import HttpServer
        from statsyard.http.wiring import build_api

        def start_http(ctx: StartContext) -> pykka.ActorRef[Any]:
            api = build_api(
                options,
                storage=self._storage_handle.get,
                registry=self.registry,
                ready=self.ready,
            )
            return HttpServer.start(
                app=api,
                host=options.host,
                port=options.port,
                threads=options.threads,
                link=ctx.link,
            )

        return ChildSpec(HTTP, start_http, shutdown=15.0)

    def _count_restart(self, child_id: str) -> None:
        self.registry.counter("supervisor.restarts", tags={"child": child_id}).inc()

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
        register_pipeline_gauges(self.registry, self.ledger, self._contents)
        link = _HostLink(self._threads)
        self._supervisor_ref = Supervisor.start(
            specs=self._specs(),
            max_restarts=self.settings.pipeline.max_restarts,
            max_seconds=self.settings.pipeline.max_seconds,
            table=self._table,
            threads=self._threads,
            on_exit=self._on_tree_exit,
            on_restart=self._count_restart,
            link=link,
        )
        # The supervisor starts every child in order, each after the one
        # before is up; a child that fails then fails the whole start (OTP).
        # Each child's start is bounded by its spec (the writer's recovery is
        # not): the supervisor always reports success or failure.
        link.wait_started(None)
        if link.start_error is not None:
            self._stopping = True
            self._threads.join(_START_JOIN)
            error = link.start_error
            cause = error.__cause__
            if isinstance(cause, StatsYardError):
                raise cause from None  # it names the directory, port, ...
            if isinstance(error, _SupervisionStartError):
                raise ChildStartError(str(error), child_id=error.child_id) from cause
            if isinstance(error, StatsYardError):
                raise error
            raise NotRunningError(f"StatsYard could not start: {error}") from error
        self._linger_thread = threading.Thread(
            target=self._linger_loop, name="statsyard-linger", daemon=True
        )
        self._linger_thread.start()
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
        self._wake.set()  # the linger thread returns once it is not sending
        if self._exit is None and self._supervisor_ref is not None:
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
        self._settle(SupervisorExit("stopped", gave_up=False), deadline)
        linger = self._linger_thread
        if linger is not None and linger is not threading.current_thread():
            linger.join(remaining(deadline))
            if linger.is_alive():
                logger.error("The linger thread is still running after stop")
        stragglers = self._threads.join(remaining(deadline))
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
            self.supervisor.terminate_child(GRAPHITE).get(
                timeout=_GRAPHITE_DRAIN + 10.0
            )
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
        """The tree stopped (supervisor's thread): release waiters, settle the queue.

        It takes no lock a host thread may hold while it waits: it first fails
        every parked caller (which releases pushers blocked in ``push()``),
        then counts what the queue still held. What the host itself holds
        (staged points, a push not yet answered) is settled by the linger
        thread or ``stop()``, which then tell the host.
        """
        self._running.clear()
        if self._exit is None:
            self._exit = exit_
        if exit_.gave_up:
            logger.error("StatsYard's supervision tree stopped: %s", exit_.reason)
        self._close_contents(exit_.reason)
        self._wake.set()

    def _close_contents(self, reason: str) -> None:
        """Fail every parked caller, then count what the queue held as lost."""
        lost = close_contents(
            self._contents,
            QueueClosedError(f"StatsYard stopped: {reason}"),
            committed=self.ledger.committed_upto,
        )
        if lost:
            self.ledger.lose(lost)
            logger.error("Lost %d accepted points: %s", lost, reason)

    def _settle(self, exit_: SupervisorExit, deadline: float | None) -> None:
        """Count what the host still holds as lost, then tell the host, once.

        Runs in the linger thread (the tree gave up) or in ``stop()``.
        """
        exit_ = self._exit if self._exit is not None else exit_
        self._close_contents(exit_.reason)
        if not self._stage_lock.acquire(timeout=lock_timeout(deadline)):
            logger.error("A pusher still holds the staging lock; not settled")
            return
        try:
            if self._settled:
                return
            self._settled = True
            staged, self._staged = self._staged, []
            self._count_lost(len(staged), NotRunningError(exit_.reason))
            if self._pending is not None:  # answered by now: the contents are closed
                pending, self._pending = self._pending, None
                try:
                    self._await_push(pending, deadline)
                except StatsYardError:
                    pass  # counted as lost by _await_push
                except NoAnswerYet:
                    self._count_lost(pending.size, NotRunningError(exit_.reason))
        finally:
            self._stage_lock.release()
        self._exit = exit_
        self._exited.set()
        if self._host_on_exit is not None:
            try:
                self._host_on_exit(exit_)
            except Exception:  # deliberate: the host's callback must not break us
                logger.exception("on_exit callback failed")

    def wait_stopped(self, timeout: float | None = None) -> SupervisorExit | None:
        """Wait for the tree to stop (by itself or ``stop()``); return why, or None.

        It returns the exit only once every point is settled: ``counts()``
        then has nothing pending.
        """
        self._exited.wait(timeout)
        return self._exit

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
        if self._stopping or self._exit is not None:
            reason = self._exit.reason if self._exit is not None else "stopped"
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
        kind = type(point)
        if kind is tuple:
            if len(point) == 3:
                point = (*point, now_ms())
        elif kind is dict and point.get("timestamp") is None:
            point = {**point, "timestamp": now_ms()}
        with self._stage_lock:
            staged = self._staged
            if not staged:
                self._first_staged()
            staged.append(point)
            if len(staged) >= self.batch_size:
                self._send_staged()

    def push_many(self, points: Iterable[Any]) -> None:
        """Accept many points, in order; waits while the queue is full.

        Points without a timestamp are stamped as they are taken, one clock
        reading per batch (see :meth:`push`).

        Raises:
            NotRunningError: the tree is not running; points already taken
                are settled (queued, or counted as lost).
        """
        self._check_running()
        size = self.batch_size
        remaining = iter(points)
        with self._stage_lock:
            while True:
                if not self._staged:
                    self._first_staged()
                chunk = list(islice(remaining, size - len(self._staged)))
                self._staged.extend(_stamped(chunk, now_ms()))
                if len(self._staged) < size:
                    return
                self._send_staged()

    def _first_staged(self) -> None:
        """A batch starts (stage lock held): refuse if stopped, wake the linger."""
        if self._exit is not None or self._settled:
            raise NotRunningError(f"StatsYard is not running: {self._stop_reason()}")
        self._staged_since = time.monotonic()
        self._wake.set()

    def _stop_reason(self) -> str:
        return self._exit.reason if self._exit is not None else "stopped"

    def _send_staged(self, deadline: float | None = None) -> None:
        """Hand the staged batch to the queue (caller holds the stage lock).

        One push stays in flight while the next batch fills; it is awaited
        before the next one goes, which is where back-pressure bites.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._await_push(pending, deadline)
        batch, self._staged = self._staged, []
        if batch:
            try:
                self._pending = self.queue.submit(batch)
            except StatsYardError as exc:
                self._count_lost(len(batch), exc)
                raise
            self._wake.set()  # the linger thread awaits it if nobody else does

    def _await_push(self, pending: PendingPush, deadline: float | None = None) -> None:
        """Wait for the queue's decision on a push; count what it refused as lost.

        Raises:
            NoAnswerYet: ``deadline`` passed first; the push is pending again.
        """
        try:
            pending.wait(deadline=deadline)
        except NoAnswerYet:
            self._pending = pending
            raise
        except StatsYardError as exc:
            self._count_lost(pending.size - getattr(exc, "accepted", 0), exc)
            raise

    def _count_lost(self, points: int, reason: Exception) -> None:
        """Points push() took that never reached the queue: count them as lost."""
        if points > 0:
            self.ledger.lose_unqueued(points)
            logger.error("Lost %d pushed points before the queue: %s", points, reason)

    def _linger_loop(self) -> None:
        """Send a partial batch ``linger`` s after its first point; idle, sleep.

        While nothing is staged or pending it waits on an event with no
        timeout, so an idle StatsYard costs no wake-ups.
        """
        timeout: float | None = None
        while True:
            self._wake.wait(timeout)
            self._linger_wakeups += 1
            self._wake.clear()
            if self._exit is not None:
                self._settle(self._exit, None)
                return
            if self._stopping:
                return  # stop() sends and settles what is staged
            with self._stage_lock:
                timeout = None
                if self._staged:
                    due = self._staged_since + self.linger - time.monotonic()
                    if due > 0:
                        timeout = due
                        continue
                if self._staged or self._pending is not None:
                    try:
                        self._send_staged()
                        if self._pending is not None:
                            pending, self._pending = self._pending, None
                            self._await_push(pending)
                    except StatsYardError:  # logged and counted where it happened
                        pass

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
        # A pusher may hold the stage lock while it waits for room: wait for
        # it no longer than the deadline.
        if not self._stage_lock.acquire(timeout=lock_timeout(deadline)):
            raise FlushTimeout("a pusher still waits for room in the queue")
        try:
            self._send_staged(deadline)
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._await_push(pending, deadline)
        except NoAnswerYet as exc:
            raise FlushTimeout("the queue did not take the points in time") from exc
        finally:
            self._stage_lock.release()
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
